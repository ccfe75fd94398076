//! The deploy kit (`deploy/`), checked offline: promtool checks and unit-tests the alert rules
//! and the Prometheus config; every YAML and JSON file parses; the alerts and the dashboard use
//! only metrics and labels from `docs/metrics.md` (so kit and catalogue cannot drift); the
//! Kubernetes manifests validate against the Kubernetes JSON schemas (kubernetes-validate,
//! schemas bundled); the commands, flags and environment variables the kit gives tollgate are
//! ones tollgate has; the compose file, the Collector config and the dashboard are consistent.
//!
//! Tools, set up on first use: promtool (from PATH, else Debian's `prometheus` package unpacked
//! under target/ by `tests/clients/prometheus.sh`), and PyYAML + kubernetes-validate, which
//! `tests/clients/setup.sh` installs (pinned) into its venv. A tool that cannot be installed
//! fails the test with the way to install it; nothing is skipped.
//!
//! Not checked here: `docker compose config` (no Compose plugin on the CI image) and the
//! Collector's own `validate` (no otelcol binary); see deploy/README.md.

// Integration tests: helpers fail loudly with the whole story.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use tollgate_tests::clients::{prometheus_tool, repo_root, venv_bin};

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ------------------------------------------------------------------------------------ tools

/// Runs promtool in the repository root (fetched on first use when it is not on PATH).
fn promtool(args: &[&str]) -> String {
    let promtool = prometheus_tool("promtool");
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    text(&out)
}

#[test]
fn without_promtool_on_path_debians_prometheus_package_is_unpacked_under_target() {
    // Forced past PATH, so this checks the fetch on machines that have promtool installed too
    // (the first run downloads the package; later ones find it unpacked).
    let out = Command::new("bash")
        .arg(repo_root().join("tests/clients/prometheus.sh"))
        .env("TOLLGATE_PROMETHEUS_FROM_PACKAGE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        bin.starts_with(repo_root().join("target/clients/prometheus")),
        "{}",
        bin.display()
    );
    for tool in ["promtool", "prometheus"] {
        let version = Command::new(bin.join(tool))
            .arg("--version")
            .output()
            .unwrap();
        assert!(
            version.status.success() && text(&version).contains("version 2."),
            "{tool}: {}",
            text(&version)
        );
    }
}

const YAML_TO_JSON: &str = r#"
import json, sys, yaml
out = {}
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            out[path] = {"docs": list(yaml.safe_load_all(f))}
    except Exception as e:
        out[path] = {"error": f"{type(e).__name__}: {e}"}
json.dump(out, sys.stdout, default=str)
"#;

/// Every `*.yml`/`*.yaml` file under `deploy/`, parsed (all documents), keyed by its path
/// relative to `deploy/`. Parse errors fail here, all of them named at once.
fn deploy_yaml() -> &'static BTreeMap<String, Vec<Value>> {
    static PARSED: OnceLock<BTreeMap<String, Vec<Value>>> = OnceLock::new();
    PARSED.get_or_init(|| {
        let files = files_under(&deploy_dir(), &["yml", "yaml"]);
        assert!(
            files.len() >= 10,
            "expected the deploy kit's YAML files, found {files:?}"
        );
        let out = Command::new(venv_bin("PyYAML and kubernetes-validate").join("python"))
            .arg("-c")
            .arg(YAML_TO_JSON)
            .args(&files)
            .output()
            .expect("the venv's python runs");
        assert!(out.status.success(), "YAML to JSON failed:\n{}", text(&out));
        let parsed: BTreeMap<String, Value> =
            serde_json::from_slice(&out.stdout).expect("the converter prints JSON");
        let mut errors = Vec::new();
        let mut docs = BTreeMap::new();
        for (path, result) in parsed {
            let rel = Path::new(&path)
                .strip_prefix(deploy_dir())
                .expect("under deploy/")
                .to_string_lossy()
                .into_owned();
            match result.get("error") {
                Some(e) => errors.push(format!("deploy/{rel}: {e}")),
                None => {
                    docs.insert(rel, result["docs"].as_array().cloned().unwrap_or_default());
                }
            }
        }
        assert!(
            errors.is_empty(),
            "YAML that does not parse:\n{}",
            errors.join("\n")
        );
        docs
    })
}

/// The single document of a deploy YAML file.
fn yaml(rel: &str) -> &'static Value {
    let docs = deploy_yaml()
        .get(rel)
        .unwrap_or_else(|| panic!("deploy/{rel} is missing"));
    assert_eq!(docs.len(), 1, "deploy/{rel} should hold one YAML document");
    &docs[0]
}

fn dashboard() -> Value {
    let path = deploy_dir().join("grafana/tollgate.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn arr<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v}"))
}

fn obj<'a>(v: &'a Value, what: &str) -> &'a serde_json::Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what}: expected a mapping, got {v}"))
}

// --------------------------------------------------------------------------------- promtool

#[test]
fn promtool_checks_the_alert_rules() {
    let out = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    let out = promtool(&["test", "rules", "deploy/prometheus/alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_checks_the_prometheus_config_and_its_rule_files() {
    let out = promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    assert!(out.contains("1 rule files found"), "{out}");
}

// ------------------------------------------------------------------------------ every file

#[test]
fn every_yaml_and_json_file_under_deploy_parses() {
    let yaml = deploy_yaml();
    for expected in [
        "compose.yaml",
        "prometheus/alerts.yml",
        "prometheus/alerts_test.yml",
        "prometheus/prometheus.yml",
        "otel-collector/config.yaml",
        "grafana/provisioning/datasources/prometheus.yaml",
        "grafana/provisioning/dashboards/tollgate.yaml",
        "kubernetes/kustomization.yaml",
        "kubernetes/deployment.yaml",
    ] {
        assert!(
            yaml.contains_key(expected),
            "deploy/{expected} missing: {:?}",
            yaml.keys()
        );
    }
    for path in files_under(&deploy_dir(), &["json"]) {
        serde_json::from_str::<Value>(&read(&path))
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    }
}

// -------------------------------------------------------------------------------- alerts

#[derive(Debug)]
struct Rule {
    name: String,
    expr: String,
    severity: String,
    annotations: BTreeMap<String, String>,
}

fn alert_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for group in arr(&yaml("prometheus/alerts.yml")["groups"], "groups") {
        for rule in arr(&group["rules"], "rules") {
            if rule.get("record").is_some() {
                continue;
            }
            let name = str_of(&rule["alert"], "a rule records or alerts").to_string();
            let annotations = obj(&rule["annotations"], &format!("{name}.annotations"))
                .iter()
                .map(|(k, v)| (k.clone(), str_of(v, k).to_string()))
                .collect();
            rules.push(Rule {
                expr: str_of(&rule["expr"], &name).to_string(),
                severity: str_of(
                    &rule["labels"]["severity"],
                    &format!("{name}: severity label"),
                )
                .to_string(),
                annotations,
                name,
            });
        }
    }
    rules
}

/// The recording rules: (name, expression), one entry per rule (a name can have several, one
/// per label set).
fn recording_rules() -> Vec<(String, String)> {
    arr(&yaml("prometheus/alerts.yml")["groups"], "groups")
        .iter()
        .flat_map(|group| arr(&group["rules"], "rules"))
        .filter(|rule| rule.get("record").is_some())
        .map(|rule| {
            let name = str_of(&rule["record"], "record").to_string();
            let expr = str_of(&rule["expr"], &name).to_string();
            (name, expr)
        })
        .collect()
}

/// Every recorded name (`level:tollgate_…[:operation]`) in a text.
fn recorded_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(is_ident(c) || c == ':'))
        .filter(|word| word.contains(":tollgate_"))
        .map(String::from)
        .collect()
}

#[test]
fn every_recording_rule_is_used_and_every_recorded_name_used_is_recorded() {
    let recorded: BTreeSet<String> = recording_rules().into_iter().map(|(n, _)| n).collect();
    assert!(!recorded.is_empty(), "alerts.yml records nothing");
    let mut used = BTreeSet::new();
    for rule in alert_rules() {
        used.extend(recorded_names(&rule.expr));
    }
    for (_, expr) in recording_rules() {
        used.extend(recorded_names(&expr));
    }
    used.extend(recorded_names(&read(
        &deploy_dir().join("grafana/tollgate.json"),
    )));
    let unrecorded: Vec<&String> = used.difference(&recorded).collect();
    let unused: Vec<&String> = recorded.difference(&used).collect();
    assert!(
        unrecorded.is_empty() && unused.is_empty(),
        "used but never recorded: {unrecorded:?}; recorded but never used: {unused:?}"
    );
}

#[test]
fn every_alert_is_labelled_annotated_and_tested_firing_and_quiet() {
    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    for expected in [
        "TollgateTokenBurnRateHigh",
        "TollgateToolLoopSuspected",
        "TollgateSessionLoopDetected",
        "TollgateSessionCostExceeded",
        "TollgateBudgetNearlyExhausted",
        "TollgateBudgetExhausted",
        "TollgateUpstreamErrorRatioHigh",
        "TollgateCompletionRatioLow",
        "TollgateLedgerSpooling",
        "TollgateTelemetryExportFailing",
        "TollgateCodexTaskCompletionLow",
        "TollgateCodexTimeToResolutionHigh",
        "TollgateCodexTokenBurnHigh",
        "TollgateCodexGateFailureRateHigh",
    ] {
        assert!(
            names.contains(expected),
            "alert {expected} missing from alerts.yml"
        );
    }
    assert_eq!(names.len(), rules.len(), "alert names must be unique");

    // What the unit tests expect, per alert: how many cases fire it and how many expect silence.
    let tests = yaml("prometheus/alerts_test.yml");
    assert_eq!(tests["rule_files"], serde_json::json!(["alerts.yml"]));
    let mut firing: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let mut quiet: BTreeMap<String, usize> = BTreeMap::new();
    for group in arr(&tests["tests"], "tests") {
        for case in arr(&group["alert_rule_test"], "alert_rule_test") {
            let name = str_of(&case["alertname"], "alertname").to_string();
            assert!(
                names.contains(name.as_str()),
                "alerts_test.yml tests unknown alert {name}"
            );
            let expected = arr(&case["exp_alerts"], &format!("{name}: exp_alerts"));
            if expected.is_empty() {
                *quiet.entry(name).or_default() += 1;
            } else {
                firing.entry(name).or_default().extend(expected);
            }
        }
    }

    let mut problems = Vec::new();
    for rule in &rules {
        let name = &rule.name;
        if !["warning", "critical"].contains(&rule.severity.as_str()) {
            problems.push(format!(
                "{name}: severity '{}' is not warning/critical",
                rule.severity
            ));
        }
        for key in ["summary", "description", "runbook"] {
            if rule
                .annotations
                .get(key)
                .is_none_or(|v| v.trim().is_empty())
            {
                problems.push(format!("{name}: annotation '{key}' missing"));
            }
        }
        // Per-team alerts name the team and its cost centre.
        if grouping_labels(&rule.expr).contains(&"team".to_string()) {
            for key in ["summary", "description"] {
                let v = rule.annotations.get(key).map(String::as_str).unwrap_or("");
                if !v.contains("$labels.team") || !v.contains("$labels.cost_centre") {
                    problems.push(format!(
                        "{name}: per-team alert whose {key} does not name team and cost_centre"
                    ));
                }
            }
        }
        match firing.get(name) {
            None => problems.push(format!("{name}: no unit test in which it fires")),
            Some(cases) => {
                for case in cases {
                    if case["exp_labels"]["severity"].as_str() != Some(&rule.severity) {
                        problems.push(format!(
                            "{name}: a firing case without exp_labels.severity {}",
                            rule.severity
                        ));
                    }
                    for key in ["summary", "description", "runbook"] {
                        if case["exp_annotations"][key].as_str().is_none() {
                            problems.push(format!(
                                "{name}: a firing case without exp_annotations.{key}"
                            ));
                        }
                    }
                }
            }
        }
        if !quiet.contains_key(name) {
            problems.push(format!(
                "{name}: no unit test in which it must stay quiet (exp_alerts: [])"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// --------------------------------------------------------------- metrics vs the catalogue

#[derive(Debug)]
struct Metric {
    kind: String,
    labels: BTreeSet<String>,
}

/// docs/metrics.md's table: name → type and labels.
fn catalogue() -> BTreeMap<String, Metric> {
    let doc = read(&repo_root().join("docs/metrics.md"));
    let mut metrics = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `tollgate_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let labels = cells[3]
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "—" && *l != "-")
            .map(String::from)
            .collect();
        metrics.insert(
            name,
            Metric {
                kind: cells[2].to_string(),
                labels,
            },
        );
    }
    assert!(
        metrics.len() >= 10,
        "could not read the metric table of docs/metrics.md: {metrics:?}"
    );
    metrics
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `tollgate_…` identifier in a text, with the byte offset just past it.
fn metric_tokens(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("tollgate_") {
        let start = from + i;
        let end = text[start..]
            .find(|c: char| !is_ident(c))
            .map_or(text.len(), |n| start + n);
        // `level:tollgate_…:operation` is a recording rule's name, not a metric.
        if !text[..start]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident(c) || c == ':')
        {
            found.push((text[start..end].to_string(), end));
        }
        from = end;
    }
    found
}

/// The catalogued metric a series name belongs to (histograms have _bucket/_sum/_count).
fn resolve<'a>(
    catalogue: &'a BTreeMap<String, Metric>,
    name: &str,
) -> Option<(&'a str, &'a Metric)> {
    if let Some((k, m)) = catalogue.get_key_value(name) {
        return Some((k, m));
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let (k, m) = catalogue.get_key_value(base)?;
        (m.kind == "histogram").then_some((k.as_str(), m))
    })
}

/// Label names in the `{…}` right after `at` (empty when there is no selector).
fn matcher_labels(text: &str, at: usize) -> Vec<String> {
    let Some(body) = text[at..].strip_prefix('{') else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    let (mut item, mut in_quote, mut escaped) = (String::new(), false, false);
    for c in body.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            ',' | '}' if !in_quote => {
                let name: String = item
                    .trim_start()
                    .chars()
                    .take_while(|c| is_ident(*c))
                    .collect();
                if !name.is_empty() {
                    labels.push(name);
                }
                item.clear();
                if c == '}' {
                    break;
                }
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    labels
}

/// Labels named in `by (…)`, `without (…)`, `on (…)`, `ignoring (…)`, `group_left/right (…)`.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for keyword in [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ] {
        let mut from = 0;
        while let Some(i) = expr[from..].find(keyword) {
            let start = from + i;
            let end = start + keyword.len();
            from = end;
            let before_ok = !expr[..start].chars().next_back().is_some_and(is_ident);
            let after_ok = !expr[end..].chars().next().is_some_and(is_ident);
            let rest = expr[end..].trim_start();
            if before_ok && after_ok && rest.starts_with('(') {
                let list = &rest[1..rest.find(')').unwrap_or(rest.len())];
                labels.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    labels
}

/// Names after `prefix` in a text (`$labels.team`, `{{team}}` …).
fn names_after(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .chars()
                .take_while(|c| is_ident(*c))
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Every PromQL expression of the kit: (where, expression).
fn kit_expressions() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for (name, expr) in recording_rules() {
        exprs.push((format!("alerts.yml {name}"), expr));
    }
    for rule in alert_rules() {
        exprs.push((format!("alerts.yml {}", rule.name), rule.expr.clone()));
        for (key, v) in &rule.annotations {
            exprs.push((format!("alerts.yml {} {key}", rule.name), v.clone()));
        }
    }
    for group in arr(&yaml("prometheus/alerts_test.yml")["tests"], "tests") {
        for series in arr(&group["input_series"], "input_series") {
            exprs.push((
                "alerts_test.yml".into(),
                str_of(&series["series"], "series").into(),
            ));
        }
    }
    let dash = dashboard();
    for panel in arr(&dash["panels"], "panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            exprs.push((
                format!("dashboard '{title}'"),
                str_of(&target["expr"], title).into(),
            ));
        }
    }
    for var in arr(&dash["templating"]["list"], "templating") {
        if let Some(q) = var["query"]["query"].as_str() {
            exprs.push((format!("dashboard variable {}", var["name"]), q.into()));
        }
    }
    exprs
}

#[test]
fn the_kit_uses_only_catalogued_metrics_and_labels() {
    let catalogue = catalogue();
    let mut all_labels: BTreeSet<String> = catalogue
        .values()
        .flat_map(|m| m.labels.iter().cloned())
        .collect();
    // Added by Prometheus (job, instance) and by histograms (le).
    all_labels.extend(["job", "instance", "le"].map(String::from));
    let mut problems = Vec::new();

    // Every tollgate_* name anywhere in the alert rules, their tests and the dashboard.
    for file in [
        "prometheus/alerts.yml",
        "prometheus/alerts_test.yml",
        "grafana/tollgate.json",
    ] {
        for (name, _) in metric_tokens(&read(&deploy_dir().join(file))) {
            if resolve(&catalogue, &name).is_none() {
                problems.push(format!("deploy/{file}: {name} is not in docs/metrics.md"));
            }
        }
    }
    // Labels: selectors against the metric's own labels; grouping, annotation and legend
    // labels against the catalogue's.
    for (place, expr) in kit_expressions() {
        for (name, end) in metric_tokens(&expr) {
            let Some((base, metric)) = resolve(&catalogue, &name) else {
                continue;
            };
            for label in matcher_labels(&expr, end) {
                let known = metric.labels.contains(&label)
                    || ["job", "instance"].contains(&label.as_str())
                    || (label == "le" && name.ends_with("_bucket"));
                if !known {
                    problems.push(format!(
                        "{place}: {name} has no label '{label}' ({base}: {:?})",
                        metric.labels
                    ));
                }
            }
        }
        let used = grouping_labels(&expr)
            .into_iter()
            .chain(names_after(&expr, "$labels."))
            .chain(names_after(&expr, "{{"));
        for label in used {
            if !all_labels.contains(&label) {
                problems.push(format!(
                    "{place}: label '{label}' is not in docs/metrics.md"
                ));
            }
        }
    }
    let dash = dashboard();
    for panel in arr(&dash["panels"], "panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let legend = target["legendFormat"].as_str().unwrap_or("");
            for label in names_after(legend, "{{") {
                if !all_labels.contains(&label) {
                    problems.push(format!(
                        "dashboard '{}': legend label '{label}' is not in docs/metrics.md",
                        panel["title"]
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_dashboard_shows_every_catalogued_metric() {
    let catalogue = catalogue();
    let dash = read(&deploy_dir().join("grafana/tollgate.json"));
    let shown: BTreeSet<&str> = metric_tokens(&dash)
        .iter()
        .filter_map(|(name, _)| resolve(&catalogue, name).map(|(base, _)| base))
        .collect();
    let missing: Vec<&String> = catalogue
        .keys()
        .filter(|m| !shown.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics in docs/metrics.md with no dashboard panel: {missing:?}"
    );
}

// ------------------------------------------------------------------------------- grafana

#[test]
fn the_dashboard_and_its_provisioning_fit_together() {
    let dash = dashboard();
    let vars = arr(&dash["templating"]["list"], "templating.list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus datasource variable");
    let ds_ref = format!("${{{}}}", str_of(&ds["name"], "datasource variable name"));
    for name in ["team", "cost_centre"] {
        assert!(
            vars.iter().any(|v| v["name"] == name),
            "dashboard variable ${name} missing"
        );
    }
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for panel in arr(&dash["panels"], "panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        if !ids.insert(panel["id"].as_u64().expect("numeric panel id")) {
            problems.push(format!("'{title}': duplicate panel id"));
        }
        let grid = &panel["gridPos"];
        if grid["x"].as_u64().unwrap_or(99) + grid["w"].as_u64().unwrap_or(99) > 24 {
            problems.push(format!("'{title}': gridPos wider than 24 columns"));
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["datasource"]["uid"].as_str() != Some(&ds_ref) {
            problems.push(format!("'{title}': datasource is not {ds_ref}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("'{title}': no query"));
        }
        for target in &targets {
            let expr = target["expr"].as_str().unwrap_or("");
            if target["datasource"]["uid"].as_str() != Some(&ds_ref) {
                problems.push(format!(
                    "'{title}': a query whose datasource is not {ds_ref}"
                ));
            }
            if expr.contains("tollgate_spend_nano_usd_total") && !expr.contains("1e9") {
                problems.push(format!("'{title}': nano-USD shown without dividing by 1e9"));
            }
            if expr.contains("histogram_quantile")
                && !(expr.contains("_bucket") && grouping_labels(expr).contains(&"le".to_string()))
            {
                problems.push(format!(
                    "'{title}': histogram_quantile needs _bucket series grouped by le"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Provisioning: the datasource points at the compose Prometheus; the provider reads the
    // directory compose mounts the dashboard into.
    let datasources = arr(
        &yaml("grafana/provisioning/datasources/prometheus.yaml")["datasources"],
        "datasources",
    );
    assert!(
        datasources
            .iter()
            .any(|d| d["type"] == "prometheus" && d["url"] == "http://prometheus:9090")
    );
    let providers = arr(
        &yaml("grafana/provisioning/dashboards/tollgate.yaml")["providers"],
        "providers",
    );
    let path = str_of(&providers[0]["options"]["path"], "provider path");
    let grafana = &yaml("compose.yaml")["services"]["grafana"];
    let mounts: Vec<&str> = arr(&grafana["volumes"], "grafana volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        mounts.contains(&format!("./grafana/tollgate.json:{path}/tollgate.json:ro").as_str()),
        "compose must mount grafana/tollgate.json into the provider's path {path}: {mounts:?}"
    );
    assert!(
        mounts.contains(&"./grafana/provisioning:/etc/grafana/provisioning:ro"),
        "{mounts:?}"
    );
}

// ----------------------------------------------------------------------------- kubernetes

fn kubernetes_manifests() -> Vec<String> {
    deploy_yaml()
        .keys()
        .filter(|k| k.starts_with("kubernetes/") && !k.ends_with("kustomization.yaml"))
        .cloned()
        .collect()
}

/// The one resource of a kind among the listed manifests.
fn k8s(kind: &str) -> &'static Value {
    let found: Vec<&Value> = deploy_yaml()
        .iter()
        .filter(|(k, _)| k.starts_with("kubernetes/"))
        .flat_map(|(_, docs)| docs)
        .filter(|d| d["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} in deploy/kubernetes");
    found[0]
}

#[test]
fn kubernetes_manifests_validate_against_the_kubernetes_schemas() {
    let validator = venv_bin("PyYAML and kubernetes-validate").join("kubernetes-validate");
    let files: Vec<PathBuf> = kubernetes_manifests()
        .iter()
        .map(|k| deploy_dir().join(k))
        .collect();
    // The oldest and the newest Kubernetes the pinned kubernetes-validate bundles schemas for
    // that these manifests are meant for; --strict rejects unknown fields (typos).
    for version in ["1.29.0", "1.37.0"] {
        let out = Command::new(&validator)
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (tests/clients/setup.sh installs it)",
                    validator.display()
                )
            });
        assert!(
            out.status.success(),
            "kubernetes-validate (Kubernetes {version}):\n{}",
            text(&out)
        );
        let passed = text(&out).matches(" passed ").count();
        assert_eq!(
            passed,
            files.len(),
            "every manifest validated: {}",
            text(&out)
        );
    }
}

#[test]
fn kustomization_lists_every_manifest_but_the_secret_template() {
    let kustomization = yaml("kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> = arr(&kustomization["resources"], "resources")
        .iter()
        .map(|r| format!("kubernetes/{}", str_of(r, "resource")))
        .collect();
    let expected: BTreeSet<String> = kubernetes_manifests()
        .into_iter()
        .filter(|k| !k.ends_with("secret.example.yaml"))
        .collect();
    assert_eq!(listed, expected);
    assert!(
        kustomization.get("namespace").is_none(),
        "the manifests stay namespace-agnostic"
    );
    for docs in deploy_yaml()
        .iter()
        .filter(|(k, _)| k.starts_with("kubernetes/"))
        .map(|(_, d)| d)
    {
        for doc in docs {
            assert!(
                doc["metadata"]["namespace"].is_null(),
                "namespace set in {doc}"
            );
        }
    }
}

#[test]
fn kubernetes_objects_fit_together_and_the_config_is_valid() {
    let deployment = k8s("Deployment");
    let pod = &deployment["spec"]["template"];
    let container = &arr(&pod["spec"]["containers"], "containers")[0];
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    for key in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][key][resource].is_string(),
                "resources.{key}.{resource}"
            );
        }
    }
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );

    // The selector, the Service, the PDB and the HPA all find the pods.
    let pod_labels = obj(&pod["metadata"]["labels"], "pod labels");
    let selects = |selector: &Value| {
        obj(selector, "selector")
            .iter()
            .all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"]));
    assert!(selects(&k8s("Service")["spec"]["selector"]));
    assert!(selects(
        &k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    ));
    let hpa = k8s("HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );

    // tollgate.toml from the ConfigMap is a configuration tollgate accepts (with the secrets
    // the Secret provides), and its ports and spool path match the pod.
    let configmap = k8s("ConfigMap");
    let toml = str_of(
        &configmap["data"]["tollgate.toml"],
        "ConfigMap tollgate.toml",
    );
    let mut config = tollgate_core::config::Config::from_toml(toml)
        .unwrap_or_else(|p| panic!("the ConfigMap's tollgate.toml is refused: {p}"));
    config.apply_env(|name| match name {
        "TOLLGATE_UPSTREAM_KEY" => Some("sk-test".into()),
        "DATABASE_URL" => Some("postgres://tollgate:pw@postgres:5432/tollgate".into()),
        _ => None,
    });
    let problems = config.validate();
    assert!(
        problems.is_empty(),
        "the ConfigMap's tollgate.toml is invalid: {problems:?}"
    );
    let ports: BTreeMap<&str, u64> = arr(&container["ports"], "ports")
        .iter()
        .map(|p| {
            (
                str_of(&p["name"], "port name"),
                p["containerPort"].as_u64().expect("port"),
            )
        })
        .collect();
    assert!(
        config.listen.ends_with(&format!(":{}", ports["http"])),
        "listen vs port http"
    );
    let admin = config.admin_listen.as_deref().expect("admin_listen set");
    assert!(
        admin.ends_with(&format!(":{}", ports["admin"])),
        "admin_listen vs port admin"
    );
    // Prometheus discovers the pods by annotation and scrapes the admin port, where /metrics
    // needs no token (on the main port it does).
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["prometheus.io/port"],
        ports["admin"].to_string(),
        "the scrape annotation is not the admin port"
    );
    let service_targets: BTreeSet<&str> = arr(&k8s("Service")["spec"]["ports"], "service ports")
        .iter()
        .map(|p| str_of(&p["targetPort"], "targetPort"))
        .collect();
    assert_eq!(service_targets, BTreeSet::from(["http", "admin"]));
    let spool_dir = Path::new(&config.ledger.spool_path)
        .parent()
        .expect("spool_path has a directory")
        .to_string_lossy()
        .into_owned();
    let spool_mount = arr(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == spool_dir.as_str())
        .unwrap_or_else(|| panic!("nothing mounted at the spool directory {spool_dir}"));
    let volume = arr(&pod["spec"]["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == spool_mount["name"])
        .expect("the spool volume");
    assert!(
        volume["emptyDir"].is_object(),
        "the spool is an emptyDir: {volume}"
    );

    // The secrets the pods read are the ones the Secret template provides.
    let template_keys: BTreeSet<&String> = obj(&k8s("Secret")["stringData"], "Secret stringData")
        .keys()
        .collect();
    for key in [
        "TOLLGATE_UPSTREAM_KEY",
        "TOLLGATE_ADMIN_TOKEN",
        "DATABASE_URL",
    ] {
        assert!(
            template_keys.contains(&key.to_string()),
            "Secret template lacks {key}"
        );
    }
    let job = k8s("Job");
    let job_container = &arr(
        &job["spec"]["template"]["spec"]["containers"],
        "job containers",
    )[0];
    assert_eq!(job_container["args"][0], "migrate");
}

// --------------------------------------------- commands, flags and env vars tollgate has

/// tollgate's CLI as its own parser defines it: top-level subcommand → its long flags (global
/// flags included).
fn cli_flags() -> BTreeMap<String, BTreeSet<String>> {
    use clap::CommandFactory;
    let cli = tollgate::cli::Cli::command();
    let long = |cmd: &clap::Command| -> BTreeSet<String> {
        cmd.get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect()
    };
    let global = long(&cli);
    let mut commands = BTreeMap::new();
    for sub in cli.get_subcommands() {
        let mut allowed = global.clone();
        allowed.extend(long(sub));
        commands.insert(sub.get_name().to_string(), allowed);
    }
    assert!(
        commands.contains_key("serve") && commands.contains_key("migrate"),
        "cli: {commands:?}"
    );
    commands
}

fn check_cli(place: &str, args: &[String], problems: &mut Vec<String>) {
    let commands = cli_flags();
    let Some(allowed) = args.first().and_then(|c| commands.get(c)) else {
        problems.push(format!(
            "{place}: '{}' is not a tollgate subcommand ({:?})",
            args.join(" "),
            commands.keys()
        ));
        return;
    };
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap_or(arg);
        if !allowed.contains(flag) {
            problems.push(format!(
                "{place}: tollgate {} has no flag {flag} ({allowed:?})",
                args[0]
            ));
        }
    }
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    arr(v, what)
        .iter()
        .map(|s| str_of(s, what).to_string())
        .collect()
}

/// Environment variables tollgate reads: string literals in the crates' sources, plus the two
/// read by libraries and the manifest's own helper.
fn check_env(place: &str, names: &[String], problems: &mut Vec<String>) {
    static SOURCES: OnceLock<String> = OnceLock::new();
    let sources = SOURCES.get_or_init(|| {
        let mut all = String::new();
        for dir in std::fs::read_dir(repo_root().join("crates")).expect("crates/") {
            let src = dir.expect("entry").path().join("src");
            if src.is_dir() && !src.starts_with(repo_root().join("crates/tollgate-tests")) {
                for file in files_under(&src, &["rs"]) {
                    all.push_str(&read(&file));
                }
            }
        }
        all
    });
    for name in names {
        let library = ["RUST_LOG", "POD_NAME"].contains(&name.as_str());
        if !library && !sources.contains(&format!("\"{name}\"")) {
            problems.push(format!(
                "{place}: tollgate reads no environment variable {name}"
            ));
        }
    }
}

/// `${NAME:-default}` → default, as compose interpolates with an empty environment.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').map_or(rest.len(), |n| i + n);
        let inner = &rest[i + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[(end + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_kit_gives_tollgate_only_commands_flags_and_env_vars_it_has() {
    let mut problems = Vec::new();

    // compose: every service running the tollgate image.
    let compose = yaml("compose.yaml");
    let services = obj(&compose["services"], "services");
    let mut tollgate_services = 0;
    for (name, service) in services {
        if service["build"]["dockerfile"] != "deploy/Dockerfile" {
            continue;
        }
        tollgate_services += 1;
        check_cli(
            &format!("compose {name}"),
            &strings(&service["command"], name),
            &mut problems,
        );
        if let Some(env) = service["environment"].as_object() {
            check_env(
                &format!("compose {name}"),
                &env.keys().cloned().collect::<Vec<_>>(),
                &mut problems,
            );
        }
    }
    assert_eq!(
        tollgate_services, 4,
        "tollgate-1, tollgate-2, migrate, mock-upstream"
    );

    // kubernetes: every container running the tollgate image.
    for (file, docs) in deploy_yaml()
        .iter()
        .filter(|(k, _)| k.starts_with("kubernetes/"))
    {
        for doc in docs {
            for container in doc["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let place = format!("{file} {}", container["name"]);
                assert_eq!(container["image"], "tollgate", "{place}");
                check_cli(&place, &strings(&container["args"], &place), &mut problems);
                let env: Vec<String> = container["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| str_of(&e["name"], "env name").to_string())
                    .collect();
                check_env(&place, &env, &mut problems);
            }
        }
    }
    let secret_keys: Vec<String> = obj(&k8s("Secret")["stringData"], "stringData")
        .keys()
        .cloned()
        .collect();
    check_env(
        "kubernetes/secret.example.yaml",
        &secret_keys,
        &mut problems,
    );

    // Dockerfile: ENTRYPOINT tollgate, CMD a subcommand, ENV names tollgate reads.
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    let instruction = |name: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("Dockerfile has no {name}"));
        serde_json::from_str(&line[name.len() + 1..])
            .unwrap_or_else(|e| panic!("{name} is not an exec-form list: {e}"))
    };
    assert_eq!(instruction("ENTRYPOINT"), ["tollgate"]);
    check_cli("Dockerfile CMD", &instruction("CMD"), &mut problems);
    let env: Vec<String> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .map(|l| l.split('=').next().unwrap_or("").to_string())
        .collect();
    check_env("Dockerfile", &env, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------- compose

#[test]
fn the_compose_file_is_self_consistent() {
    let compose = yaml("compose.yaml");
    let services = obj(&compose["services"], "services");
    for expected in [
        "postgres",
        "migrate",
        "mock-upstream",
        "tollgate-1",
        "tollgate-2",
        "otel-collector",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.contains_key(expected),
            "compose service {expected} missing"
        );
    }
    let volumes = compose["volumes"].as_object().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let mut host_ports = BTreeSet::new();
    for (name, service) in services {
        if let Some(build) = service.get("build") {
            let context = deploy_dir().join(str_of(&build["context"], "build context"));
            if !context
                .join(str_of(&build["dockerfile"], "dockerfile"))
                .is_file()
            {
                problems.push(format!("{name}: build dockerfile not found"));
            }
        }
        if let Some(deps) = service["depends_on"].as_object() {
            for (dep, how) in deps {
                match services.get(dep) {
                    None => problems.push(format!("{name}: depends on unknown service {dep}")),
                    Some(target) => {
                        let condition = how["condition"].as_str().unwrap_or("service_started");
                        if condition == "service_healthy" && target["healthcheck"].is_null() {
                            problems.push(format!(
                                "{name}: waits for {dep} to be healthy, which has no healthcheck"
                            ));
                        }
                        if ![
                            "service_started",
                            "service_healthy",
                            "service_completed_successfully",
                        ]
                        .contains(&condition)
                        {
                            problems.push(format!("{name}: unknown condition {condition}"));
                        }
                    }
                }
            }
        }
        for mount in service["volumes"].as_array().into_iter().flatten() {
            let mount = str_of(mount, "volume");
            let source = mount.split(':').next().unwrap_or("");
            if source.starts_with('.') {
                if !deploy_dir().join(source).exists() {
                    problems.push(format!("{name}: bind mount source {source} does not exist"));
                }
            } else if !volumes.contains_key(source) {
                problems.push(format!("{name}: volume {source} is not declared"));
            }
        }
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = str_of(port, "port");
            let host = port.rsplit_once(':').map_or(port, |(host, _)| host);
            if !host_ports.insert(host.to_string()) {
                problems.push(format!("{name}: host port {host} used twice"));
            }
        }
    }
    // The replicas: ready on /readyz, Postgres, the mock upstream by default, OTLP to the
    // Collector, after the migration.
    for replica in ["tollgate-1", "tollgate-2"] {
        let service = &services[replica];
        let check = strings(&service["healthcheck"]["test"], "healthcheck").join(" ");
        if !check.contains("/readyz") {
            problems.push(format!(
                "{replica}: healthcheck does not probe /readyz: {check}"
            ));
        }
        let env = |key: &str| interpolate(service["environment"][key].as_str().unwrap_or(""));
        if !env("DATABASE_URL").starts_with("postgres://") {
            problems.push(format!("{replica}: DATABASE_URL is not Postgres"));
        }
        if !env("TOLLGATE_UPSTREAM_URL").starts_with("http://mock-upstream:") {
            problems.push(format!(
                "{replica}: the upstream does not default to mock-upstream"
            ));
        }
        for key in ["OPENAI_API_KEY", "TOLLGATE_ADMIN_TOKEN", "TOLLGATE_LISTEN"] {
            if env(key).is_empty() {
                problems.push(format!("{replica}: {key} has no default"));
            }
        }
        if env("TOLLGATE_TELEMETRY_ENABLED") != "true"
            || !env("OTEL_EXPORTER_OTLP_ENDPOINT").contains("otel-collector:4317")
        {
            problems.push(format!(
                "{replica}: OTLP export to the Collector not configured"
            ));
        }
        if service["depends_on"]["migrate"]["condition"] != "service_completed_successfully" {
            problems.push(format!("{replica}: does not wait for the migration"));
        }
    }
    // What runs the mock upstream is what the replicas call.
    let mock = strings(
        &services["mock-upstream"]["command"],
        "mock-upstream command",
    )
    .join(" ");
    if !mock.contains("--listen 0.0.0.0:8089") {
        problems.push(format!(
            "mock-upstream listens elsewhere than :8089: {mock}"
        ));
    }
    // Prometheus scrapes both replicas' admin listener (where /metrics needs no token: on the
    // main port it does) and loads the alert rules.
    let prometheus = yaml("prometheus/prometheus.yml");
    assert_eq!(prometheus["rule_files"], serde_json::json!(["alerts.yml"]));
    let tollgate_job = arr(&prometheus["scrape_configs"], "scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "tollgate")
        .expect("a tollgate scrape job");
    assert_eq!(tollgate_job["metrics_path"], "/metrics");
    let targets = strings(&tollgate_job["static_configs"][0]["targets"], "targets");
    assert_eq!(targets, ["tollgate-1:8081", "tollgate-2:8081"]);
    let admin_listen = interpolate(str_of(
        &compose["x-tollgate-env"]["TOLLGATE_ADMIN_LISTEN"],
        "TOLLGATE_ADMIN_LISTEN",
    ));
    assert!(
        admin_listen.ends_with(":8081"),
        "the scrape targets are not the admin listener {admin_listen}"
    );
    for target in &targets {
        let service = target.split(':').next().unwrap_or("");
        assert!(
            services.contains_key(service),
            "scrape target {target} is no compose service"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------------ otel collector

#[test]
fn the_collector_pipelines_use_only_components_it_defines() {
    let config = yaml("otel-collector/config.yaml");
    let pipelines = obj(&config["service"]["pipelines"], "service.pipelines");
    for signal in ["traces", "metrics", "logs"] {
        assert!(pipelines.contains_key(signal), "no {signal} pipeline");
    }
    let mut problems = Vec::new();
    for (pipeline, spec) in pipelines {
        for section in ["receivers", "processors", "exporters"] {
            for component in strings(&spec[section], &format!("{pipeline}.{section}")) {
                if config[section].get(&component).is_none() {
                    problems.push(format!(
                        "pipeline {pipeline}: {section} '{component}' is not defined"
                    ));
                }
            }
        }
        let processors = strings(&spec["processors"], "processors");
        if processors.first().map(String::as_str) != Some("memory_limiter")
            || processors.last().map(String::as_str) != Some("batch")
        {
            problems.push(format!(
                "pipeline {pipeline}: memory_limiter first and batch last: {processors:?}"
            ));
        }
    }
    for extension in strings(&config["service"]["extensions"], "service.extensions") {
        if config["extensions"].get(&extension).is_none() {
            problems.push(format!("extension {extension} is not defined"));
        }
    }
    let otlp = &config["receivers"]["otlp"]["protocols"];
    assert_eq!(otlp["grpc"]["endpoint"], "0.0.0.0:4317");
    assert_eq!(otlp["http"]["endpoint"], "0.0.0.0:4318");
    // team / cost_centre copied from tollgate.team / tollgate.cost_centre.
    let actions = arr(
        &config["processors"]["attributes/team"]["actions"],
        "attributes/team.actions",
    );
    for (key, from) in [
        ("team", "tollgate.team"),
        ("cost_centre", "tollgate.cost_centre"),
    ] {
        assert!(
            actions
                .iter()
                .any(|a| a["key"] == key && a["from_attribute"] == from),
            "attributes/team does not copy {from} to {key}"
        );
    }
    // The Prometheus exporter's names must never collide with the scraped tollgate_* series.
    assert!(
        config["exporters"]["prometheus"]["namespace"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------- dockerfile

#[test]
fn the_dockerfile_builds_from_paths_that_exist() {
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    assert!(dockerfile.contains("FROM rust:1.95-slim-bookworm AS build"));
    assert!(dockerfile.contains("cargo build --release --locked -p tollgate"));
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root"))
    );
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(
                repo_root().join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
        }
    }
    let ignore = read(&repo_root().join(".dockerignore"));
    for entry in [".git", "**/target/", "fuzz/artifacts/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}
