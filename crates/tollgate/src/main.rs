//! The `tollgate` command: parses arguments, loads configuration, dispatches.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use tollgate::cli::{Cli, Command, MockArgs};
use tollgate::config_load::{self, EXIT_CONFIG};
use tollgate::plane::{ControlPlane, Local};
use tollgate::{app, commands, demo};
use tollgate_core::config::redact_url;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Codex acts on a hook's exit status (2 turns a Stop hook's stderr into the model's next
        // prompt): a mistyped `tollgate hook` flag must fail open like everything else in it.
        Err(e) if e.use_stderr() && std::env::args().any(|a| a == "hook") => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("tollgate hook: {first}; Codex continues unchanged");
            return ExitCode::SUCCESS;
        }
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tollgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    // A Codex hook reads no configuration: nothing may stop it from answering Codex.
    if let Command::Hook(args) = cli.command {
        return tollgate::hook::run(args).await;
    }
    let config = match config_load::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(problems) => {
            config_load::report(&problems);
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => {
            let mut config = config;
            if args.migrate {
                config.store.migrate_on_start = Some(true);
            }
            let problems = config_load::validate_for_serve(&config);
            if !problems.is_empty() {
                config_load::report(&problems);
                return ExitCode::from(EXIT_CONFIG as u8);
            }
            serve(config).await
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Migrate => migrate(&config).await,
        Command::MockUpstream(args) => mock_upstream(args).await,
        // With --server, management goes through the admin API (any machine, any role's
        // token); without, straight to the database in DATABASE_URL as the local operator.
        // Either way the same control plane carries it out and audits it.
        command => match &cli.server {
            Some(server) => match tollgate::admin_client::connect(server, cli.token.as_deref()) {
                Ok(api) => manage(&api, command).await,
                Err(e) => Err(e),
            },
            None => match Local::open(&config, cli.token.is_some()).await {
                Ok(local) => {
                    let result = manage(&local, command).await;
                    local.close().await;
                    result
                }
                Err(e) => Err(e),
            },
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and each cause it does not already spell out: several of our error types carry
/// their source's text in their own message, and `{:#}` would repeat it once per layer.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

async fn manage(plane: &impl ControlPlane, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Team(c) => commands::team(plane, c).await,
        Command::Key(c) => commands::key(plane, c).await,
        Command::Budget(c) => commands::budget(plane, c).await,
        Command::RateLimit(c) => commands::rate_limit(plane, c).await,
        Command::Report(args) => commands::report(plane, args).await,
        Command::Session(c) => commands::session(plane, c).await,
        Command::Serve(_)
        | Command::Demo(_)
        | Command::Migrate
        | Command::MockUpstream(_)
        | Command::Hook(_) => {
            anyhow::bail!("--server applies to team, key, budget, rate-limit, report and session")
        }
    }
}

async fn serve(config: tollgate_core::config::Config) -> anyhow::Result<()> {
    let db = redact_url(&config.store.database_url);
    let upstream = config.upstream.url.clone();
    // Where OTLP goes, in the start line: the endpoint alone switches export on, so say so.
    let otlp = match config.telemetry.exports() {
        true => format!(
            "{} ({})",
            config.telemetry.endpoint(),
            config.telemetry.protocol
        ),
        false => "off".to_string(),
    };
    let stop = tollgate::shutdown_signal();
    let running = app::start(config).await?;
    if let Some(token) = &running.generated_admin_token {
        eprintln!(
            "\nNo TOLLGATE_ADMIN_TOKEN was set, so tollgate generated an admin token. It is shown once:\n\n  {token}\n"
        );
    }
    tracing::info!(listen = %running.addr, admin = ?running.admin_addr, %upstream, database = %db, %otlp, "tollgate is serving");
    stop.await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown().await;
    Ok(())
}

async fn migrate(config: &tollgate_core::config::Config) -> anyhow::Result<()> {
    let store = tollgate_store::Store::connect(&config.store.database_url).await?;
    store.migrate().await?;
    store.close().await;
    eprintln!(
        "migrations applied to {}",
        redact_url(&config.store.database_url)
    );
    Ok(())
}

async fn mock_upstream(args: MockArgs) -> anyhow::Result<()> {
    let addr = args.listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "--listen '{}' is not an address like 127.0.0.1:8089",
            args.listen
        )
    })?;
    let options = tollgate_mock::MockOptions {
        ws_max_responses: args.ws_max_responses,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        first_byte_delay: Duration::from_millis(args.first_byte_delay_ms),
        fail_status: args.fail_status,
        cut_after_events: args.cut_after,
        no_usage: args.no_usage,
        deltas: args.deltas,
        record: !args.no_record,
        batch_auto_complete: args.batch_auto_complete,
    };
    // Bind first, then announce: whoever waits for this line can connect at once.
    let stop = tollgate::shutdown_signal();
    let mock = tollgate_mock::start(addr, options).await?;
    eprintln!("mock upstream listening on {}", mock.base_url());
    stop.await;
    drop(mock);
    Ok(())
}
