//! A blocking client for the agent, over any byte stream.

use std::io::{Read, Write};

use crate::frame::{read_frame, write_frame, FrameError};
use crate::message::{Envelope, ExecResult, Request, Response, PROTOCOL_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("agent answered request {got} while request {want} was pending")]
    IdMismatch { want: u64, got: u64 },
    #[error("agent reported an error: {0}")]
    Agent(String),
    #[error("unexpected reply from agent: {0:?}")]
    Unexpected(Box<Response>),
    #[error("agent speaks protocol {agent}, host speaks {host}")]
    VersionMismatch { agent: u32, host: u32 },
}

pub struct AgentClient<S> {
    stream: S,
    next_id: u64,
}

impl<S: Read + Write> AgentClient<S> {
    pub fn new(stream: S) -> Self {
        Self { stream, next_id: 1 }
    }

    /// The stream alone, for a connection that leaves the protocol (a
    /// standard stream after `AttachStdio`).
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// The underlying stream, for raw transfers after
    /// [`Request::HashStream`] or [`Request::GenerateStream`].
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Send one request and wait for its response. `Response::Error` becomes
    /// [`ClientError::Agent`].
    pub fn call(&mut self, body: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        write_frame(&mut self.stream, &Envelope { id, body })?;
        self.read_reply(id)
    }

    /// Read the response to request `id` (for callers that wrote it raw).
    pub fn read_reply(&mut self, id: u64) -> Result<Response, ClientError> {
        let reply: Envelope<Response> = read_frame(&mut self.stream)?;
        if reply.id != id {
            return Err(ClientError::IdMismatch {
                want: id,
                got: reply.id,
            });
        }
        match reply.body {
            Response::Error { message } => Err(ClientError::Agent(message)),
            other => Ok(other),
        }
    }

    pub fn ping(&mut self) -> Result<(), ClientError> {
        match self.call(Request::Ping)? {
            Response::Pong => Ok(()),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Check that the agent speaks our protocol; returns its version string.
    pub fn handshake(&mut self) -> Result<String, ClientError> {
        match self.call(Request::Version)? {
            Response::Version { protocol, agent } if protocol == PROTOCOL_VERSION => Ok(agent),
            Response::Version { protocol, .. } => Err(ClientError::VersionMismatch {
                agent: protocol,
                host: PROTOCOL_VERSION,
            }),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub fn exec(&mut self, argv: &[&str], stdin: &[u8]) -> Result<ExecResult, ClientError> {
        let req = Request::Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin:/sbin:/usr/bin:/usr/sbin".into()],
            cwd: None,
            stdin: stdin.to_vec(),
        };
        match self.call(req)? {
            Response::Exec(r) => Ok(r),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Send a request whose only success answer is [`Response::Ok`].
    pub fn expect_ok(&mut self, body: Request) -> Result<(), ClientError> {
        match self.call(body)? {
            Response::Ok => Ok(()),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, ClientError> {
        match self.call(Request::ReadFile { path: path.into() })? {
            Response::File { data } => Ok(data),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }
}
