# glibc's allocator settings for every PostgreSQL server infra/ starts: the shared one (services.sh) and the drills'
# own (drills/nodes.sh, drills/ha.sh). Why: docs/operations.md, "PostgreSQL's allocator". The deployment descriptions
# (deploy/compose.yaml, deploy/k8s/postgres.yaml) carry the same values.
# shellcheck disable=SC2034 # read by the scripts that source this file
pg_allocator=(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_TOP_PAD_=16777216)

# The allocator settings as a cluster's environment file (/etc/postgresql/VERSION/NAME/environment), which pg_ctlcluster
# reads at start only.
pg_allocator_environment() {
  printf '# Written by infra/ (pg-allocator.sh).\n'
  local setting
  for setting in "${pg_allocator[@]}"; do printf '%s = %s\n' "${setting%%=*}" "${setting#*=}"; done
}
