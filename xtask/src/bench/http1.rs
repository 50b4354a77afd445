//! One HTTP/1.1 keep-alive client connection, plain or TLS, made for load: it writes ready-made
//! request bytes and reads only what finds the end of the answer (status line and framing
//! headers), discarding the body in place, so a request costs no allocation.

use std::io;
use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

pub type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// Room for a typical answer in one read; a head larger than `MAX_HEAD` is refused.
const READ_CHUNK: usize = 16 * 1024;
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// How an answer's body ends (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The parts of an answer a load run needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub status: u16,
    /// False when the server asked to close, or the body ran to the end of the connection.
    pub keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Failure {
    /// The connection ended before a single byte of the answer: on a reused keep-alive
    /// connection this is the server closing it while idle, and the request can go on a new one.
    ClosedBeforeAnswer,
    /// An I/O error or an answer that is not HTTP/1.x.
    Broken,
}

pub struct Connection {
    stream: Stream,
    /// Received bytes; `buf[pos..]` is not consumed yet.
    buf: Vec<u8>,
    pos: usize,
    /// Whether this connection already carried an answer (so a close may just be idle expiry).
    pub reused: bool,
}

impl Connection {
    pub fn new(stream: Stream) -> Connection {
        Connection { stream, buf: Vec::with_capacity(READ_CHUNK), pos: 0, reused: false }
    }

    /// Writes `request` and reads its whole answer. `head_request`: the answer has no body.
    pub async fn exchange(&mut self, request: &[u8], head_request: bool) -> Result<Answer, Failure> {
        if let Err(e) = self.write(request).await {
            return Err(if self.reused && is_reset(&e) { Failure::ClosedBeforeAnswer } else { Failure::Broken });
        }
        let (status, framing, keep_alive) = self.read_head(head_request).await?;
        let body_ends_connection = framing == Framing::UntilClose;
        match framing {
            Framing::Empty => {}
            Framing::Length(n) => self.skip(n).await?,
            Framing::Chunked => self.skip_chunked().await?,
            Framing::UntilClose => self.skip_to_end().await?,
        }
        self.reused = true;
        // Bytes after the answer were never asked for: the connection is out of step.
        let keep_alive = keep_alive && !body_ends_connection && self.pos == self.buf.len();
        Ok(Answer { status, keep_alive })
    }

    async fn write(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request).await?;
        // A no-op on plain TCP; pushes the TLS records out.
        self.stream.flush().await
    }

    /// Reads more bytes after `buf[pos..]`; 0 means the peer closed.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
        } else if self.pos > 0 {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
        }
        self.pos = 0;
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// Like `fill`, but the answer must go on.
    async fn fill_more(&mut self) -> Result<(), Failure> {
        match self.fill().await {
            Ok(0) | Err(_) => Err(Failure::Broken),
            Ok(_) => Ok(()),
        }
    }

    /// Reads up to the end of the head of the final (non-1xx) answer.
    async fn read_head(&mut self, head_request: bool) -> Result<(u16, Framing, bool), Failure> {
        let mut seen_any = false;
        loop {
            if self.pos < self.buf.len() {
                seen_any = true;
                if let Some((used, head)) = parse_head(&self.buf[self.pos..], head_request)? {
                    self.pos += used;
                    // 100 Continue and friends precede the real answer (101 switches protocols: final).
                    if (100..200).contains(&head.0) && head.0 != 101 {
                        continue;
                    }
                    return Ok(head);
                }
                if self.buf.len() - self.pos >= MAX_HEAD {
                    return Err(Failure::Broken);
                }
            }
            match self.fill().await {
                Ok(0) | Err(_) if !seen_any && self.reused => return Err(Failure::ClosedBeforeAnswer),
                Ok(0) | Err(_) => return Err(Failure::Broken),
                Ok(_) => {}
            }
        }
    }

    /// Discards `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> Result<(), Failure> {
        loop {
            let available = (self.buf.len() - self.pos) as u64;
            if available >= n {
                self.pos += n as usize;
                return Ok(());
            }
            n -= available;
            self.pos = self.buf.len();
            self.fill_more().await?;
        }
    }

    async fn skip_chunked(&mut self) -> Result<(), Failure> {
        loop {
            let size = match httparse::parse_chunk_size(&self.buf[self.pos..]) {
                Ok(Status::Complete((used, size))) => {
                    self.pos += used;
                    size
                }
                Ok(Status::Partial) => {
                    self.fill_more().await?;
                    continue;
                }
                Err(_) => return Err(Failure::Broken),
            };
            if size == 0 {
                return self.skip_trailers().await;
            }
            // The chunk's data and the CRLF after it.
            self.skip(size + 2).await?;
        }
    }

    /// Trailer fields after the last chunk, up to the empty line.
    async fn skip_trailers(&mut self) -> Result<(), Failure> {
        loop {
            match self.buf[self.pos..].windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(i) => self.pos += i + 2,
                None => self.fill_more().await?,
            }
        }
    }

    /// A body without a length ends when the server closes (an unclean TLS close included).
    async fn skip_to_end(&mut self) -> Result<(), Failure> {
        loop {
            self.pos = self.buf.len();
            match self.fill().await {
                Ok(0) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(_) => return Err(Failure::Broken),
                Ok(_) => {}
            }
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}

/// Parses an answer head from `bytes`: `None` while incomplete, else its length and
/// `(status, framing, keep_alive)`.
fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<(usize, (u16, Framing, bool))>, Failure> {
    let mut headers = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let used = match ParserConfig::default().parse_response_with_uninit_headers(&mut response, bytes, &mut headers) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::Broken),
    };
    let status = response.code.ok_or(Failure::Broken)?;
    let mut keep_alive = response.version == Some(1);
    let (mut length, mut chunked) = (None, false);
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).map_err(|_| Failure::Broken)?;
            length = Some(text.trim().parse::<u64>().map_err(|_| Failure::Broken)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a final `chunked` frames the body; any other coding runs to the close.
            chunked = last_token_is(h.value, b"chunked");
            if !chunked {
                keep_alive = false;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, b"close") {
                keep_alive = false;
            } else if has_token(h.value, b"keep-alive") && response.version == Some(0) {
                keep_alive = true;
            }
        }
    }
    // After 101 the connection speaks another protocol.
    if status == 101 {
        keep_alive = false;
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = match (no_body, chunked, length) {
        (true, _, _) => Framing::Empty,
        (false, true, _) => Framing::Chunked,
        (false, false, Some(0)) => Framing::Empty,
        (false, false, Some(n)) => Framing::Length(n),
        (false, false, None) => Framing::UntilClose,
    };
    Ok(Some((used, (status, framing, keep_alive))))
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|t| t.trim_ascii())
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_token_is(value: &[u8], token: &[u8]) -> bool {
    tokens(value).last().is_some_and(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> (u16, Framing, bool) {
        parse_head(text.as_bytes(), false).unwrap().unwrap().1
    }

    #[test]
    fn framing_follows_the_headers() {
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n"), (200, Framing::Length(12), true));
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n"),
            (200, Framing::Chunked, true)
        );
        assert_eq!(head("HTTP/1.1 204 No Content\r\n\r\n"), (204, Framing::Empty, true));
        assert_eq!(
            head("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"),
            (101, Framing::Empty, false)
        );
        assert_eq!(head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"), (200, Framing::UntilClose, false));
        assert_eq!(head("HTTP/1.0 200 OK\r\n\r\n"), (200, Framing::UntilClose, false));
        assert_eq!(
            head("HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n"),
            (200, Framing::Empty, true)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true).unwrap().unwrap().1.1,
            Framing::Empty
        );
    }

    #[test]
    fn partial_and_broken_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le", false), Ok(None));
        assert_eq!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n", false), Err(Failure::Broken));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false), Err(Failure::Broken));
    }

    /// A real socket pair: chunked bodies split across reads, 100 Continue, and idle expiry.
    #[tokio::test]
    async fn answers_are_read_to_their_end() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 64];
            let _ = s.read(&mut request).await.unwrap();
            s.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            )
            .await
            .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(b"lo\r\n0\r\nx-trailer: 1\r\n\r\n").await.unwrap();
            let _ = s.read(&mut request).await.unwrap();
            s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnop").await.unwrap();
            let _ = s.read(&mut request).await.unwrap();
            // Closes without answering the third request.
        });
        let mut c = Connection::new(Either::Left(TcpStream::connect(addr).await.unwrap()));
        let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(c.exchange(request, false).await, Ok(Answer { status: 201, keep_alive: true }));
        assert_eq!(c.exchange(request, false).await, Ok(Answer { status: 404, keep_alive: true }));
        assert_eq!(c.exchange(request, false).await, Err(Failure::ClosedBeforeAnswer));
        server.await.unwrap();
    }
}
