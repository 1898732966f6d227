//! Linux process facts the benchmark reads: the file descriptor limit, resident memory and
//! CPU time.

use std::fs;
use std::io;
use std::time::Duration;

/// Raises the soft limit on open file descriptors to the hard limit and returns the new
/// soft limit. Each WebSocket connection needs one descriptor on each side.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid `rlimit` with the soft limit not above the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// Reads the resident set size (`VmRSS`) of process `pid`, in bytes.
pub fn resident_bytes(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or_else(|| invalid_data(format!("no VmRSS line in /proc/{pid}/status")))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| invalid_data(format!("invalid VmRSS line {line:?}")))?;
    Ok(kib * 1024)
}

/// Reads the CPU time (user plus system) that process `pid` has used so far.
pub fn process_cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name in field 2 may contain spaces, so count fields after its ')'.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| invalid_data(format!("invalid /proc/{pid}/stat")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, so 11 and 12 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&index| {
            fields
                .get(index)
                .and_then(|field| field.parse::<u64>().ok())
        })
        .sum::<Option<u64>>()
        .ok_or_else(|| invalid_data(format!("no utime and stime in /proc/{pid}/stat")))?;
    Ok(ticks_to_duration(ticks))
}

/// Returns the CPU time (user plus system) that this process has used so far.
pub fn own_cpu_time() -> io::Result<Duration> {
    process_cpu_time(std::process::id())
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_second = u64::try_from(ticks_per_second).unwrap_or(100).max(1);
    Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_second)
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
