//! `nodo`: the self-hosted media node. See `nodo --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nodo::serve::{self, ServeArgs};
use nodo::settings;
use nodo_signaling::auth::{self, VideoGrant};

#[derive(Parser)]
#[command(
    name = "nodo",
    version,
    about = "Self-hosted media node: LiveKit-compatible SFU, chat and push in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node.
    Serve(Box<ServeArgs>),
    /// Access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Exit 0 when the node answers /healthz (for Docker HEALTHCHECK).
    Health {
        /// The node's plain-HTTP URL; default: the HTTP port of the configuration
        /// (NODO_CONFIG, NODO_SERVER__HTTP_PORT, …) on 127.0.0.1.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a LiveKit-format access token.
    Create(TokenArgs),
}

#[derive(Args)]
struct TokenArgs {
    #[arg(long, env = "LIVEKIT_API_KEY")]
    api_key: String,
    #[arg(long, env = "LIVEKIT_API_SECRET")]
    api_secret: String,
    #[arg(long)]
    identity: String,
    #[arg(long)]
    room: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    metadata: Option<String>,
    /// Grant roomJoin for --room.
    #[arg(long)]
    join: bool,
    /// Grant roomAdmin, roomCreate and roomList.
    #[arg(long)]
    admin: bool,
    /// Lifetime, e.g. 90s, 30m, 6h, 7d.
    #[arg(long, default_value = "6h")]
    valid_for: String,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the annotated default config.toml.
    Default,
    /// Validate a config file.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(*args),
        Command::Token {
            command: TokenCommand::Create(t),
        } => token_create(t),
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", settings::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Health { url } => match url.map_or_else(configured_health_url, Ok) {
            Ok(url) => health(&url),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn token_create(t: TokenArgs) -> ExitCode {
    let ttl = match parse_duration(&t.valid_for) {
        Some(d) => d,
        None => {
            eprintln!("error: --valid-for must look like 90s, 30m, 6h or 7d");
            return ExitCode::from(2);
        }
    };
    if (t.join || t.admin) && t.room.is_none() {
        eprintln!("error: --join and --admin need --room");
        return ExitCode::from(2);
    }
    let room = t.room.clone().unwrap_or_default();
    let grant = VideoGrant {
        room_join: t.join,
        room_admin: t.admin,
        room_create: t.admin,
        room_list: t.admin,
        room,
        ..VideoGrant::default()
    };
    let mut claims = auth::claims_for(&t.api_key, &t.identity, ttl, Some(grant));
    claims.name = t.name.unwrap_or_default();
    claims.metadata = t.metadata.unwrap_or_default();
    match auth::sign_with(&t.api_secret, &claims) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mult)?))
}

fn config_check(file: &std::path::Path) -> ExitCode {
    // The environment counts as `serve` would see it (keys from LIVEKIT_KEYS, NODO_*).
    let env: Vec<(String, String)> = std::env::vars().collect();
    match settings::load(Some(file), &env) {
        Ok(c) => match c.validate() {
            Ok(()) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in problems {
                    eprintln!("{}: {p}", file.display());
                }
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `http://<bind or 127.0.0.1>:<http_port>` from the configuration `serve` would use.
fn configured_health_url() -> Result<String, String> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let file = env
        .iter()
        .find(|(k, _)| k == "NODO_CONFIG")
        .map(|(_, v)| PathBuf::from(v));
    let c = settings::load(file.as_deref(), &env)?;
    let host = if c.server.bind.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        c.server.bind
    };
    Ok(format!(
        "http://{}",
        std::net::SocketAddr::new(host, c.server.http_port)
    ))
}

/// A minimal HTTP/1.1 GET of `<url>/healthz` (plain HTTP; the node's own port).
fn health(url: &str) -> ExitCode {
    use std::io::{Read, Write};
    let rest = url.trim_end_matches('/');
    let Some(hostport) = rest.strip_prefix("http://") else {
        eprintln!("error: --url must be http://host:port");
        return ExitCode::from(2);
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let result = (|| -> std::io::Result<bool> {
        use std::net::ToSocketAddrs;
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("cannot resolve host"))?;
        let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        Ok(buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200"))
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: {url}/healthz did not answer 200");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("90s").map(|d| d.as_secs()), Some(90));
        assert_eq!(
            super::parse_duration("6h").map(|d| d.as_secs()),
            Some(21_600)
        );
        assert_eq!(super::parse_duration("6"), None);
        assert_eq!(super::parse_duration("h"), None);
        assert_eq!(super::parse_duration("5y"), None);
    }
}
