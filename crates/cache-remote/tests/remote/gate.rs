//! A TCP relay between the cache and a server that holds what the cache sends once a number
//! of bytes has gone through, until the test opens it again: so a test can kill the server
//! while an upload is surely in the middle (the bytes past the mark never reached it), with no
//! race and no sleep.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Bytes sent towards the server so far.
    forwarded: u64,
    /// Whether a sender is waiting at the mark.
    holding: bool,
    /// Opened by the test: everything goes through again.
    open: bool,
}

pub(crate) struct Gate {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Gate {
    /// A relay to `127.0.0.1:upstream` that holds the client's bytes past `mark`.
    pub(crate) fn start(upstream: u16, mark: u64) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (client_in, server_out) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let gate = Arc::clone(&shared);
                std::thread::spawn(move || pump_held(client_in, server_out, &gate, mark));
                std::thread::spawn(move || pump(server, client));
            }
        });
        Gate { port, state }
    }

    /// The relay's endpoint, for `GLOVEBOX_CACHE_REMOTE_ENDPOINT`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until a sender is held at the mark (bounded only against a hang).
    pub(crate) fn wait_held(&self) {
        let (lock, changed) = &*self.state;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.holding {
            assert!(Instant::now() < deadline, "nothing reached the mark");
            state = changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Lets everything through from now on.
    pub(crate) fn open(&self) {
        let (lock, changed) = &*self.state;
        lock.lock().unwrap_or_else(PoisonError::into_inner).open = true;
        changed.notify_all();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer) {
        if n == 0 || to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn pump_held(mut from: TcpStream, mut to: TcpStream, gate: &(Mutex<State>, Condvar), mark: u64) {
    let (lock, changed) = gate;
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer) {
        if n == 0 {
            break;
        }
        {
            let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.open && state.forwarded + n as u64 > mark {
                state.holding = true;
                changed.notify_all();
                while !state.open {
                    state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
            }
            state.forwarded += n as u64;
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
