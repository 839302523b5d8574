//! A TCP proxy a test can cut, to take a dependency "down" for one process
//! without touching the shared server other tests use, or slow down, to make
//! every request to it take a while.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

/// The proxy; dropped, it stops.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    /// Milliseconds each chunk from a client waits before it is forwarded.
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Copies `from` to `to`, each chunk held `delay_ms` first.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    /// Forwards a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("bound");
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (up2, gen2, delay2) = (up.clone(), generation.clone(), delay_ms.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let born = gen2.load(Ordering::SeqCst);
                let gen3 = gen2.clone();
                let delay3 = delay2.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    if delay3.load(Ordering::SeqCst) > 0 {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        let up = delayed_copy(client_read, server_write, delay3);
                        let down = async move {
                            let mut server_read = server_read;
                            let mut client_write = client_write;
                            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        };
                        tokio::join!(up, down);
                        return;
                    }
                    let pump = copy_bidirectional(&mut client, &mut server);
                    tokio::pin!(pump);
                    loop {
                        tokio::select! {
                            _ = &mut pump => return,
                            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                                if gen3.load(Ordering::SeqCst) != born {
                                    return; // cut: drop both ends
                                }
                            }
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            generation,
            delay_ms,
            task,
        }
    }

    /// Holds each chunk a client sends for `delay` before forwarding it,
    /// on connections opened from now on.
    pub fn slow_down(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Breaks every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
