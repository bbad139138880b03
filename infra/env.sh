# Connection settings for the local services: the one place the scripts, the host and the tests read.
# Every value can be overridden from the environment; the C# side reads the same variables with the
# same defaults (tests/Throughput.Tests checks they agree).
: "${THROUGHPUT_PG_HOST:=127.0.0.1}"
: "${THROUGHPUT_PG_PORT:=5432}"
: "${THROUGHPUT_PG_DATABASE:=throughput}"
: "${THROUGHPUT_PG_USER:=throughput}"
: "${THROUGHPUT_PG_PASSWORD:=throughput}"
: "${THROUGHPUT_PG_SCHEMA:=throughput}"
# A failover group's PostgreSQL nodes, host[:port] comma-separated (the host writes to the one that takes writes);
# empty: THROUGHPUT_PG_HOST:THROUGHPUT_PG_PORT alone.
: "${THROUGHPUT_PG_HOSTS:=}"
: "${THROUGHPUT_RABBIT_HOST:=127.0.0.1}"
: "${THROUGHPUT_RABBIT_PORT:=5672}"
: "${THROUGHPUT_RABBIT_VHOST:=throughput}"
: "${THROUGHPUT_RABBIT_USER:=throughput}"
: "${THROUGHPUT_RABBIT_PASSWORD:=throughput}"
# A RabbitMQ cluster's nodes, host[:port] comma-separated; empty: THROUGHPUT_RABBIT_HOST:THROUGHPUT_RABBIT_PORT alone.
: "${THROUGHPUT_RABBIT_NODES:=}"
# The management API (every node's, comma-separated) and the broker administrator the platform provisions serving nodes'
# own broker users with; the operator's read-only management login. Serving nodes never get any of these.
: "${THROUGHPUT_RABBIT_MANAGEMENT:=http://127.0.0.1:15672}"
: "${THROUGHPUT_RABBIT_ADMIN_USER:=throughput-admin}"
: "${THROUGHPUT_RABBIT_ADMIN_PASSWORD:=throughput-admin}"
: "${THROUGHPUT_RABBIT_OPERATOR_USER:=throughput-operator}"
: "${THROUGHPUT_RABBIT_OPERATOR_PASSWORD:=throughput-operator}"
export THROUGHPUT_PG_HOST THROUGHPUT_PG_HOSTS THROUGHPUT_PG_PORT THROUGHPUT_PG_DATABASE THROUGHPUT_PG_USER THROUGHPUT_PG_PASSWORD THROUGHPUT_PG_SCHEMA
export THROUGHPUT_RABBIT_HOST THROUGHPUT_RABBIT_PORT THROUGHPUT_RABBIT_VHOST THROUGHPUT_RABBIT_USER THROUGHPUT_RABBIT_PASSWORD THROUGHPUT_RABBIT_NODES
export THROUGHPUT_RABBIT_MANAGEMENT THROUGHPUT_RABBIT_ADMIN_USER THROUGHPUT_RABBIT_ADMIN_PASSWORD THROUGHPUT_RABBIT_OPERATOR_USER THROUGHPUT_RABBIT_OPERATOR_PASSWORD
