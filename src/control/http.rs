//! The management endpoint's HTTP side: JSON-RPC requests by POST, Prometheus metrics by
//! `GET /metrics`, an optional bearer token, on one thread of its own. It also watches the
//! list file when asked to. Nothing here decides anything; [`super::rpc`] and
//! [`super::metrics`] do.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tiny_http::{Header, Method, Request, Response, Server};

use super::{Control, ControlConfig};

/// Requests larger than this are refused (a JSON-RPC call is a few hundred bytes).
const MAX_BODY: usize = 1 << 20;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("control endpoint on {addr}: {message}")]
pub struct ServeError {
    pub addr: std::net::SocketAddr,
    pub message: String,
}

/// Starts the endpoint; it runs until `stop` is set. `watch` is the list file to reload on
/// change, if any.
pub fn serve(
    ctl: Arc<Control>,
    cfg: &ControlConfig,
    watch: Option<PathBuf>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, ServeError> {
    cfg.validate().map_err(|message| ServeError {
        addr: cfg.listen,
        message,
    })?;
    let server = Server::http(cfg.listen).map_err(|e| ServeError {
        addr: cfg.listen,
        message: e.to_string(),
    })?;
    let token = cfg.token.clone().filter(|t| !t.is_empty());
    tracing::info!("management endpoint on http://{}", cfg.listen);
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let mut watched = watch.map(|p| (mtime(&p), p));
            let mut next_check = Instant::now();
            while !stop.load(Relaxed) {
                if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(100)) {
                    answer(&ctl, token.as_deref(), req);
                }
                if let Some((seen, path)) = watched.as_mut()
                    && Instant::now() >= next_check
                {
                    next_check = Instant::now() + Duration::from_secs(1);
                    let now = mtime(path);
                    if now != *seen {
                        *seen = now;
                        tracing::info!("{} changed: reloading", path.display());
                        let _ = ctl.reload(None);
                    }
                }
            }
        })
        .map_err(|e| ServeError {
            addr: cfg.listen,
            message: e.to_string(),
        })
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

fn answer(ctl: &Control, token: Option<&str>, mut req: Request) {
    if let Some(t) = token {
        let ok = req.headers().iter().any(|h| {
            h.field.equiv("Authorization")
                && h.value.as_str().strip_prefix("Bearer ").map(str::trim) == Some(t)
        });
        if !ok {
            let r = Response::from_string("a bearer token is required (Authorization: Bearer …)\n")
                .with_status_code(401)
                .with_header(header("WWW-Authenticate", "Bearer"));
            let _ = req.respond(r);
            return;
        }
    }
    let path = req.url().split('?').next().unwrap_or("/").to_owned();
    let response = match (req.method(), path.as_str()) {
        (Method::Get, "/metrics") => Response::from_string(super::metrics::render(ctl))
            .with_header(header("Content-Type", "text/plain; version=0.0.4")),
        (Method::Post, "/" | "/RPC" | "/jsonrpc") => {
            let mut body = Vec::new();
            let read = req
                .as_reader()
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body);
            if read.is_err() || body.len() > MAX_BODY {
                Response::from_string("request body too large or unreadable\n")
                    .with_status_code(413)
            } else {
                match super::rpc::handle(ctl, &body) {
                    Some(v) => Response::from_string(v.to_string())
                        .with_header(header("Content-Type", "application/json")),
                    None => Response::from_string("").with_status_code(204),
                }
            }
        }
        _ => Response::from_string("POST JSON-RPC to / or GET /metrics\n").with_status_code(404),
    };
    let _ = req.respond(response);
}
