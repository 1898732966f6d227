# Helpers shared by scripts/services-up, scripts/tansu-up and scripts/services-down.
# Source this file from bash; it defines variables and functions and runs nothing.
# shellcheck shell=bash
# shellcheck disable=SC2034 # The sourcing scripts use these variables.

# Debian installs rabbitmq-server, runuser and other administration tools under sbin,
# which a non-root PATH often lacks.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# rustup installs cargo under ~/.cargo/bin, which non-login shells (CI) may not have.
if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

TASKLANE_CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tasklane"
TASKLANE_STATE_DIR="${XDG_STATE_HOME:-$HOME/.local/state}/tasklane"
TASKLANE_APT_LOG="$TASKLANE_STATE_DIR/apt.log"

# Print a status line on stderr, so that stdout stays free for output meant for `eval`.
log() {
  printf '%s\n' "$*" >&2
}

# Print an error on stderr and exit with status 1.
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Run a command as root: directly when the script already runs as root, else through sudo.
as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  else
    sudo "$@"
  fi
}

# Run a command as the postgres OS user from /, because psql warns when it cannot read
# the caller's working directory.
as_postgres() {
  (
    cd /
    if [[ $EUID -eq 0 ]]; then
      runuser -u postgres -- "$@"
    else
      sudo -u postgres -- "$@"
    fi
  )
}

# Succeed when HOST:PORT accepts a TCP connection within one second.
tcp_accepts() {
  local host=$1 port=$2
  # shellcheck disable=SC2016 # The inner shell expands $1 and $2.
  timeout 1 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# Run COMMAND... every 0.25 s until it succeeds or SECONDS_MAX seconds have passed.
# Returns 1 on timeout.
wait_until() {
  local seconds_max=$1
  shift
  local deadline=$((SECONDS + seconds_max))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.25
  done
}

# Succeed when every named Debian package is installed (not merely known or removed).
debs_installed() {
  local package status
  for package in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null) || return 1
    [[ $status == installed ]] || return 1
  done
}

# Install Debian packages with apt-get, with output to TASKLANE_APT_LOG. The package lists
# are refreshed only when the first attempt fails, which happens on a machine that has
# never run `apt-get update` or whose lists name versions the mirror no longer has.
apt_install() {
  mkdir -p "$(dirname "$TASKLANE_APT_LOG")"
  log "apt: installing $* (log: $TASKLANE_APT_LOG)"
  if apt_get_install "$@"; then
    return
  fi
  with_fds_closed as_root apt-get update >>"$TASKLANE_APT_LOG" 2>&1 ||
    die "apt-get update failed; see $TASKLANE_APT_LOG"
  apt_get_install "$@" || die "apt-get install $* failed; see $TASKLANE_APT_LOG"
}

# Wait up to 5 minutes for another apt or dpkg run to release the package database.
apt_get_install() {
  # Package scripts may start the service they install, so no lock may leak into them.
  with_fds_closed as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=300 install -y "$@" >>"$TASKLANE_APT_LOG" 2>&1
}

# Install the named Debian packages unless all of them are installed already.
ensure_debs() {
  debs_installed "$@" || apt_install "$@"
}

# Take an exclusive lock on LOCK_FILE, waiting at most SECONDS_MAX seconds. The lock is
# held on a new file descriptor until the process exits, so daemons must be started
# through with_fds_closed or after close_inherited_fds. WHAT names the serialized work for the message printed while
# waiting.
take_lock() {
  local lock_file=$1 seconds_max=$2 what=$3 fd
  mkdir -p "$(dirname "$lock_file")"
  exec {fd}>>"$lock_file"
  if ! flock -n "$fd"; then
    log "waiting for another run that is $what (lock: $lock_file)"
    flock -w "$seconds_max" "$fd" ||
      die "timed out after ${seconds_max} s waiting for the lock $lock_file"
  fi
}

# Close every file descriptor above 2 in the current shell; call it only in a subshell.
# A daemon that inherited the descriptor of a lock from take_lock, here or in a calling
# script, would hold that lock for as long as it runs.
close_inherited_fds() {
  local fd_path fd
  for fd_path in /proc/"$BASHPID"/fd/*; do
    fd=${fd_path##*/}
    if ((fd > 2)); then
      { exec {fd}>&-; } 2>/dev/null || true
    fi
  done
}

# Run COMMAND... in a subshell whose file descriptors above 2 are closed.
with_fds_closed() {
  (
    close_inherited_fds
    "$@"
  )
}
