# PostgreSQL 15 with pg_auto_failover, for the monitor and the nodes of k8s/postgres.yaml (Debian's packages, as on the
# drill machine: infra/drills/ha.sh). docker build -f infra/deploy/postgres-ha.Dockerfile -t throughput/postgres-ha:15 infra/deploy
FROM postgres:15-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15-auto-failover pg-auto-failover-cli && rm -rf /var/lib/apt/lists/*
USER postgres
