//! `shmstate`: look inside and operate a live shmstate region from the shell.
//!
//! Every subcommand takes the region as `REGION` (a POSIX shm name, as in `/dev/shm/REGION`) or
//! `--file PATH` (a file-backed region). Exit codes: 0 success, 1 a negative answer (the key
//! does not exist, `verify` found problems), 2 an error (region missing, foreign or
//! incompatible, bad arguments), with the message on stderr.

mod cli;
mod output;
mod watch;

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shmstate::{Config, Store, Ttl, WhenFull};

use cli::{Cli, Command, CreateArgs, Target};

/// What can end a command unsuccessfully.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// Opening or creating the region failed.
    #[error("cannot {verb} {what}: {source}{hint}")]
    Region {
        verb: &'static str,
        what: String,
        hint: &'static str,
        source: shmstate::Error,
    },
    /// An operation on an open region failed.
    #[error("{op}: {source}")]
    Store {
        op: &'static str,
        source: shmstate::Error,
    },
    /// Bad input that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
}

/// A successful command's answer: yes (exit 0) or no (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Yes,
    No,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let res = run(cli.command, &mut out).and_then(|a| {
        out.flush()?;
        Ok(a)
    });
    match res {
        Ok(Answer::Yes) => ExitCode::SUCCESS,
        Ok(Answer::No) => ExitCode::from(1),
        // The reader went away (`shmstate keys x | head`): not an error of ours.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "shmstate: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn describe(t: &Target) -> String {
    if t.file {
        format!("file-backed store {:?}", PathBuf::from(&t.region))
    } else {
        format!("shm store {:?}", t.region)
    }
}

fn shm_name(t: &Target) -> Result<&str, CliError> {
    t.region
        .to_str()
        .ok_or_else(|| CliError::Usage(format!("shm store name {:?} is not valid UTF-8", t.region)))
}

/// Opens the region named by `t`, with an error that says which region and what to do.
fn open(t: &Target) -> Result<Store, CliError> {
    let res = if t.file {
        Store::open_file(PathBuf::from(&t.region))
    } else {
        Store::open(shm_name(t)?)
    };
    res.map_err(|source| CliError::Region {
        verb: "open",
        what: describe(t),
        hint: match source {
            shmstate::Error::NotFound { .. } => " (create it with `shmstate create`)",
            shmstate::Error::Incompatible { .. } => {
                " (made by another program or an incompatible shmstate build)"
            }
            _ => "",
        },
        source,
    })
}

fn store_err(op: &'static str) -> impl FnOnce(shmstate::Error) -> CliError {
    move |source| CliError::Store { op, source }
}

fn key_bytes(k: &OsString) -> &[u8] {
    k.as_bytes()
}

fn run(cmd: Command, out: &mut impl Write) -> Result<Answer, CliError> {
    match cmd {
        Command::Info { target, json } => {
            let s = open(&target)?;
            if json {
                output::info_json(&s, out)?;
            } else {
                output::info_text(&s, out)?;
            }
            Ok(Answer::Yes)
        }
        Command::Stats {
            target,
            json,
            prometheus,
        } => {
            let s = open(&target)?;
            if prometheus {
                let text = shmstate::prometheus(&s).map_err(store_err("reading counters"))?;
                out.write_all(text.as_bytes())?;
            } else if json {
                output::stats_json(&s.stats(), out)?;
            } else {
                output::stats_text(&s.stats(), out)?;
            }
            Ok(Answer::Yes)
        }
        Command::Get { target, key, raw } => {
            let s = open(&target)?;
            match s.get(key_bytes(&key)).map_err(store_err("get"))? {
                Some(v) => {
                    out.write_all(&v)?;
                    if !raw {
                        out.write_all(b"\n")?;
                    }
                    Ok(Answer::Yes)
                }
                None => {
                    let _ = writeln!(io::stderr(), "shmstate: key not found");
                    Ok(Answer::No)
                }
            }
        }
        Command::Set {
            target,
            key,
            value,
            ttl,
        } => {
            let s = open(&target)?;
            s.set(key_bytes(&key), value.as_bytes(), ttl.map(|d| d.0))
                .map_err(store_err("set"))?;
            writeln!(out, "OK")?;
            Ok(Answer::Yes)
        }
        Command::Del { target, key } => {
            let s = open(&target)?;
            if s.delete(key_bytes(&key)).map_err(store_err("del"))? {
                writeln!(out, "deleted")?;
                Ok(Answer::Yes)
            } else {
                let _ = writeln!(io::stderr(), "shmstate: key not found");
                Ok(Answer::No)
            }
        }
        Command::Incr {
            target,
            key,
            delta,
            ttl,
        } => {
            let s = open(&target)?;
            let v = s
                .incr(key_bytes(&key), delta, ttl.map(|d| d.0))
                .map_err(store_err("incr"))?;
            writeln!(out, "{v}")?;
            Ok(Answer::Yes)
        }
        Command::Ttl { target, key } => {
            let s = open(&target)?;
            match s.ttl(key_bytes(&key)).map_err(store_err("ttl"))? {
                Ttl::ExpiresIn(d) => writeln!(out, "{}", d.as_millis())?,
                Ttl::NoExpiry => writeln!(out, "none")?,
                Ttl::NoKey => {
                    let _ = writeln!(io::stderr(), "shmstate: key not found");
                    return Ok(Answer::No);
                }
            }
            Ok(Answer::Yes)
        }
        Command::Keys {
            target,
            prefix,
            limit,
            cursor,
        } => {
            let s = open(&target)?;
            let prefix = prefix.as_ref().map_or(&[][..], key_bytes);
            keys(&s, prefix, limit as usize, cursor, out)
        }
        Command::Counters { target, json } => {
            let s = open(&target)?;
            let mut list = s.counters().map_err(store_err("reading counters"))?;
            list.sort();
            if json {
                output::counters_json(&list, out)?;
            } else {
                for (name, v) in &list {
                    writeln!(out, "{v:>20}  {}", output::printable(name))?;
                }
            }
            Ok(Answer::Yes)
        }
        Command::Verify { target } => {
            let s = open(&target)?;
            let rep = s.verify().map_err(store_err("verify"))?;
            write!(out, "{rep}")?;
            if rep.is_ok() {
                writeln!(out)?;
                Ok(Answer::Yes)
            } else {
                Ok(Answer::No)
            }
        }
        Command::Watch {
            target,
            interval,
            count,
        } => {
            let s = open(&target)?;
            watch::run(&s, interval.0, count, out)?;
            Ok(Answer::Yes)
        }
        Command::Create { target, args } => {
            let cfg = config_from(&args);
            let res = if target.file {
                Store::create_file(PathBuf::from(&target.region), &cfg)
            } else {
                Store::create(shm_name(&target)?, &cfg)
            };
            let s = res.map_err(|source| CliError::Region {
                verb: "create",
                what: describe(&target),
                hint: "",
                source,
            })?;
            output::info_text(&s, out)?;
            Ok(Answer::Yes)
        }
        Command::Unlink { target, force } => {
            // Check that it is one of ours first: `unlink --file` must not delete any file.
            if !force {
                drop(open(&target).map_err(|e| match e {
                    CliError::Region {
                        source: source @ shmstate::Error::Incompatible { .. },
                        what,
                        ..
                    } => CliError::Region {
                        verb: "unlink",
                        what,
                        hint: " (not removed: use --force to remove it anyway)",
                        source,
                    },
                    e => e,
                })?);
            }
            let res = if target.file {
                std::fs::remove_file(PathBuf::from(&target.region)).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        shmstate::Error::NotFound {
                            path: PathBuf::from(&target.region),
                        }
                    } else {
                        shmstate::Error::Io {
                            op: "unlink",
                            source: e,
                        }
                    }
                })
            } else {
                Store::unlink(shm_name(&target)?)
            };
            res.map_err(|source| CliError::Region {
                verb: "unlink",
                what: describe(&target),
                hint: "",
                source,
            })?;
            writeln!(out, "unlinked")?;
            Ok(Answer::Yes)
        }
    }
}

fn config_from(a: &CreateArgs) -> Config {
    let mut cfg = Config::new()
        .max_key_len(a.max_key_len)
        .max_value_len(a.max_value_len)
        .line_sized_slots(a.line_sized_slots)
        .max_counters(a.max_counters)
        .lock_timeout(a.lock_timeout.0)
        .when_full(if a.evict {
            WhenFull::Evict
        } else {
            WhenFull::Refuse
        });
    if let Some(n) = a.capacity {
        cfg = cfg.capacity(n);
    }
    if let Some(m) = a.memory {
        cfg = cfg.memory(m.0);
    }
    if let Some(n) = a.shards {
        cfg = cfg.shards(n);
    }
    cfg
}

/// Most `scan` calls one `keys` invocation makes: a bound on its work whatever the table holds
/// (every call advances the cursor by at least one slot or ends the scan).
const MAX_SCAN_CALLS: u64 = 1 << 24;

/// Prints up to `limit` keys starting with `prefix`, from `cursor` on; if the scan did not
/// finish, says on stderr which cursor to continue from.
fn keys(
    s: &Store,
    prefix: &[u8],
    limit: usize,
    cursor: u64,
    out: &mut impl Write,
) -> Result<Answer, CliError> {
    let mut cursor = Some(cursor);
    let mut printed = 0usize;
    for _ in 0..MAX_SCAN_CALLS {
        let Some(c) = cursor else { break };
        if printed >= limit {
            break;
        }
        let (page, next) = s
            .scan(c, prefix, limit - printed)
            .map_err(store_err("scan"))?;
        for k in &page {
            out.write_all(&output::escape_key(k))?;
            out.write_all(b"\n")?;
        }
        printed += page.len();
        cursor = next.filter(|&n| n > c);
    }
    if let Some(c) = cursor {
        out.flush()?;
        let _ = writeln!(
            io::stderr(),
            "shmstate: stopped after {printed} keys; continue with --cursor {c}"
        );
    }
    Ok(Answer::Yes)
}

#[cfg(test)]
mod tests {
    use super::cli::Cli;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
