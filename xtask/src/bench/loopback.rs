//! A tiny HTTP/1.1 keep-alive server on 127.0.0.1 for tests and benches: fixed status,
//! optional freeze window (to show the open model does not hide stalls).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Loopback {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    pub last_head: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

#[derive(Clone, Copy)]
pub struct Behaviour {
    pub status: u16,
    /// Answers due in `[at, at + length)` after start wait until the window ends.
    pub freeze: Option<(Duration, Duration)>,
}

impl Loopback {
    pub fn start(status: u16) -> std::io::Result<Loopback> {
        Loopback::start_with(Behaviour { status, freeze: None })
    }

    pub fn start_with(b: Behaviour) -> std::io::Result<Loopback> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let last_head = Arc::new(Mutex::new(String::new()));
        let started = Instant::now();
        let (s, r, h, c) = (stop.clone(), requests.clone(), last_head.clone(), connections.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                c.fetch_add(1, Ordering::Relaxed);
                let (r, h) = (r.clone(), h.clone());
                std::thread::spawn(move || serve(conn, b, started, &r, &h));
            }
        });
        Ok(Loopback { addr, requests, connections, last_head, stop })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, b: Behaviour, started: Instant, requests: &AtomicU64, last: &Mutex<String>) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let answer = format!("HTTP/1.1 {} X\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok", b.status);
    loop {
        let mut head = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
            let end = line == "\r\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        head.push_str(&String::from_utf8_lossy(&body));
        requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = last.lock() {
            *l = head;
        }
        if let Some((at, length)) = b.freeze {
            let now = started.elapsed();
            if now >= at && now < at + length {
                std::thread::sleep(at + length - now);
            }
        }
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
