# Paths, version and address of the Tansu broker, shared by scripts/tansu-up and
# scripts/services-down. Source it after common.sh.
# shellcheck shell=bash
# shellcheck disable=SC2034 # The sourcing scripts use these variables.

readonly TANSU_VERSION=0.6.0
readonly TANSU_FEATURES=dynostore,libsql,postgres
# The folder name carries the version and features, so changing either builds anew.
readonly TANSU_INSTALL_DIR="$TASKLANE_CACHE_DIR/tansu-$TANSU_VERSION-${TANSU_FEATURES//,/-}"
readonly TANSU_BIN="$TANSU_INSTALL_DIR/bin/tansu"
readonly TANSU_TARGET_DIR="$TASKLANE_CACHE_DIR/tansu-build"
readonly TANSU_BUILD_LOG="$TASKLANE_CACHE_DIR/tansu-build.log"
readonly TANSU_BUILD_LOCK="$TASKLANE_CACHE_DIR/tansu-build.lock"
# A cold build took 25 minutes on a 2-core machine that was also compiling other crates
# (an estimated 9 minutes when idle), so one hour leaves a wide margin.
readonly TANSU_BUILD_TIMEOUT_SECONDS=3600

readonly TANSU_STATE_DIR="$TASKLANE_STATE_DIR/tansu"
readonly TANSU_PID_FILE="$TANSU_STATE_DIR/tansu.pid"
readonly TANSU_LOG="$TANSU_STATE_DIR/tansu.log"
readonly TANSU_START_LOCK="$TANSU_STATE_DIR/start.lock"
readonly TANSU_START_TIMEOUT_SECONDS=60
readonly TANSU_HOST=127.0.0.1
readonly TANSU_PORT=9092
readonly TANSU_URL="tcp://$TANSU_HOST:$TANSU_PORT"

# Print the PID from TANSU_PID_FILE if that process is alive and is our Tansu broker,
# which guards against a PID reused by an unrelated process.
running_tansu_pid() {
  local pid
  [[ -r $TANSU_PID_FILE ]] || return 1
  pid=$(<"$TANSU_PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == "$TANSU_BIN broker "* ]] || return 1
  printf '%s\n' "$pid"
}
