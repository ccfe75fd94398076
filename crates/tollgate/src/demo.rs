//! `tollgate demo`: the gateway and the mock upstream in one process, on a throwaway SQLite
//! file, with a team and key ready — so a newcomer sees tollgate work with one command.

use tollgate_core::config::Config;
use tollgate_mock::MockOptions;

use crate::app;
use crate::cli::DemoArgs;

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mock = tollgate_mock::start("127.0.0.1:0".parse()?, MockOptions::default()).await?;
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("tollgate.db");

    let mut config = Config {
        listen: args.listen,
        ..Config::default()
    };
    config.upstream.url = mock.base_url();
    config.store.database_url = format!("sqlite://{}?mode=rwc", db.display());
    config.secrets.upstream_key = Some("sk-demo-upstream-key".into());

    // Create the demo team and key before the gateway starts, so its first cache load has them.
    let store = tollgate_store::Store::connect(&config.store.database_url).await?;
    store.migrate().await?;
    let team = store.create_team("demo", Some("CC-DEMO")).await?;
    let key = store.create_key(&team.id, "demo", None).await?;
    store.close().await;

    let stop = crate::shutdown_signal();
    let running = app::start(config).await?;
    let base = format!("http://{}/v1", running.addr);
    let token = running
        .generated_admin_token
        .clone()
        .unwrap_or_else(|| "<your TOLLGATE_ADMIN_TOKEN>".into());
    let secret = &key.secret;
    println!(
        r#"tollgate demo is running: gateway {base} → mock upstream {mock_url}
database: {db} (deleted on exit)

Team "demo" (cost centre CC-DEMO), key:
  {secret}

curl:
  curl -s {base}/chat/completions -H "Authorization: Bearer {secret}" \
    -H "Content-Type: application/json" \
    -d '{{"model":"gpt-5.5","messages":[{{"role":"user","content":"hello"}}]}}'

OpenAI SDK (Python):
  OPENAI_BASE_URL={base} OPENAI_API_KEY={secret} \
    python -c 'from openai import OpenAI; print(OpenAI().responses.create(model="gpt-5.5", input="hello").output_text)'

Codex ($CODEX_HOME/config.toml), then: TOLLGATE_KEY={secret} codex exec "say hello"
  model = "gpt-5.5"
  model_provider = "tollgate"
  [model_providers.tollgate]
  name = "tollgate"
  base_url = "{base}"
  env_key = "TOLLGATE_KEY"
  wire_api = "responses"
or keep Codex's built-in provider (it reads CODEX_API_KEY, not OPENAI_API_KEY, in codex exec):
  model = "gpt-5.5"
  openai_base_url = "{base}"
then: CODEX_API_KEY={secret} codex exec "say hello"

Admin API (admin token {token}):
  curl -s http://{addr}/admin/v1/teams -H "Authorization: Bearer {token}"

Ctrl-C to stop."#,
        mock_url = mock.base_url(),
        db = db.display(),
        addr = running.addr,
    );
    stop.await;
    running.shutdown().await;
    drop(mock);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
