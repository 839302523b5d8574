//! The deployment files are true for our binaries, checked offline (no
//! Docker engine, no cluster):
//!
//! - every kustomize overlay renders (`kubectl kustomize`) and validates
//!   against Kubernetes' schemas and KEDA's CRD types, and follows the rules
//!   of docs/deployment.md (non-root, read-only root filesystem, probes,
//!   resources, autoscalers, disruption budgets, network policies);
//! - `docker-compose.yml` passes `docker-compose config` and the Compose
//!   specification's schema;
//! - the Helm chart (deploy/helm/llm-observatory), rendered and linted by
//!   Helm's own engine (helm-python-sdk), passes the same checks for the
//!   deployment guide's command, each cloud's values and every option at
//!   once; refuses bad values with its own message naming the value; and
//!   agrees with the kustomize base component by component;
//! - the ECS task definition is valid input of ECS `RegisterTaskDefinition`
//!   (botocore's model of the API);
//! - the Dockerfile has a non-root target with a health check per binary;
//! - the settings: every environment variable any binary or subcommand
//!   declares (`--help`) is in docs/deployment.md's table, nothing is in the
//!   table that no binary reads, and every variable compose, the manifests,
//!   the chart and the task definition give one of our containers is read by that
//!   container's binary and subcommand.
//!
//! The Python checkers live in `integration/deploy-check/`; their virtualenv
//! and Debian's docker-compose are installed by
//! `integration/deploy-check/install.sh` (run by `integration/test.sh`). A
//! missing tool fails these tests; it never skips them.

use observatory_integration::workspace_bin;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ has a parent")
        .to_path_buf()
}

/// The checkers' Python: `DEPLOY_CHECK_PYTHON`, else the virtualenv
/// install.sh makes under the tools folder.
fn python() -> PathBuf {
    let path = std::env::var_os("DEPLOY_CHECK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tools = std::env::var_os("OBSERVATORY_TOOLS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                        .join(".cache/llm-observatory/tools")
                });
            tools.join("deploy-check/bin/python")
        });
    assert!(
        path.exists(),
        "{} is missing: run integration/deploy-check/install.sh (integration/test.sh does)",
        path.display()
    );
    path
}

fn checker() -> PathBuf {
    root().join("integration/deploy-check/deploy_check.py")
}

/// Runs a command in the repository root; panics naming it when it cannot start.
fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", program.display()))
}

/// Runs the checker; returns (success, stdout + stderr).
fn check(args: &[&str]) -> (bool, String) {
    let mut all = vec![checker().display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = run(&python(), &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_checks(args: &[&str]) {
    let (ok, text) = check(args);
    assert!(ok, "deploy_check.py {args:?} found problems:\n{text}");
}

// --- Kubernetes ---------------------------------------------------------------

#[test]
fn kubernetes_base_and_overlays_render_and_validate() {
    assert!(
        Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "kubectl is missing: it renders the kustomize overlays"
    );
    assert_checks(&["k8s", "--partial", "k8s/base"]);
    assert_checks(&[
        "k8s",
        "k8s/overlays/aws",
        "k8s/overlays/gcp",
        "k8s/overlays/azure",
        "k8s/overlays/plain",
    ]);
    assert_checks(&["k8s-files", "k8s/base/secrets.example.yaml"]);
}

/// A copy of k8s/ under a temporary folder, for breaking on purpose.
fn k8s_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deploy-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root().join("k8s"), &dir.join("k8s"));
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn kubernetes_check_catches_broken_manifests() {
    let dir = k8s_copy("broken");
    let k8s = dir.join("k8s");
    // An unknown field, a writable root filesystem, a probe on the wrong
    // path, a KEDA field of the wrong type and one KEDA does not have.
    edit(
        &k8s.join("base/collector.yaml"),
        "  replicas: 3\n",
        "  replica: 3\n",
    );
    edit(
        &k8s.join("base/api.yaml"),
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
    );
    edit(
        &k8s.join("base/consumer-tempo.yaml"),
        "              path: /readyz",
        "              path: /ready",
    );
    edit(
        &k8s.join("components/keda/scaledobjects.yaml"),
        "  minReplicaCount: 1\n",
        "  minReplicaCount: one\n  maxReplicas: 4\n",
    );
    let overlay = k8s.join("overlays/aws").display().to_string();
    let (ok, text) = check(&["k8s", &overlay]);
    assert!(!ok, "the broken overlay passed:\n{text}");
    for expected in [
        "Deployment/observatory-collector: spec: Additional properties are not allowed ('replica' was unexpected)",
        "container api: securityContext.readOnlyRootFilesystem must be true",
        "container consumer: readinessProbe must GET /readyz",
        "ScaledObject/observatory-consumer-timescale: spec.minReplicaCount",
        "spec.maxReplicas: unknown field",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }

    // The sink without its lag autoscaler, and a collector HPA off the guide.
    let dir = k8s_copy("unscaled");
    let k8s = dir.join("k8s");
    edit(
        &k8s.join("components/keda/scaledobjects.yaml"),
        "    name: observatory-consumer-tempo\n",
        "    name: observatory-consumer-nothing\n",
    );
    edit(
        &k8s.join("base/collector.yaml"),
        "  maxReplicas: 10\n",
        "  maxReplicas: 20\n",
    );
    let overlay = k8s.join("overlays/gcp").display().to_string();
    let (ok, text) = check(&["k8s", &overlay]);
    assert!(!ok, "the unscaled overlay passed:\n{text}");
    for expected in [
        "ScaledObject/observatory-consumer-tempo scales observatory-consumer-nothing, which does not exist",
        "Deployment/observatory-consumer-tempo is not scaled on the lag of its group observatory-tempo",
        "collector HPA must scale 3 to 10 replicas on 70% CPU",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }

    // A real value in a Secret template.
    let secret = dir.join("secret.yaml");
    std::fs::write(
        &secret,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: observatory\nstringData:\n  jwt-secret: hunter2hunter2hunter2\n",
    )
    .unwrap();
    let (ok, text) = check(&["k8s-files", &secret.display().to_string()]);
    assert!(
        !ok && text.contains("jwt-secret must be the placeholder CHANGE-ME"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("deploy-check-broken-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(dir);
}

// --- Helm chart ---------------------------------------------------------------

/// The deployment guide's `helm install` (only database.host and redis.host
/// set), KEDA found or not, the lag HPAs, each cloud's values file and every
/// option at once: each renders objects that validate and follow the rules.
#[test]
fn helm_chart_renders_the_guides_install_and_each_clouds_values() {
    assert_checks(&[
        "helm",
        "--set",
        "database.host=your-rds-endpoint",
        "--set",
        "redis.host=your-elasticache-endpoint",
    ]);
    // autoscaling.mode auto: KEDA's ScaledObjects when the cluster serves KEDA.
    assert_checks(&[
        "helm",
        "--set",
        "database.host=db",
        "--api-versions",
        "keda.sh/v1alpha1",
        "--expect-kind",
        "ScaledObject",
    ]);
    assert_checks(&[
        "helm",
        "--set",
        "database.host=db,timescale.autoscaling.mode=hpa,tempo.autoscaling.mode=hpa",
        "--expect-kind",
        "HorizontalPodAutoscaler",
    ]);
    for cloud in ["aws", "gcp", "azure"] {
        let file = format!("deploy/helm/examples/{cloud}.yaml");
        assert_checks(&["helm", "-f", &file, "--expect-kind", "ScaledObject"]);
    }
    assert_checks(&[
        "helm",
        "-f",
        "integration/deploy-check/helm-values/everything.yaml",
        "--expect-kind",
        "ServiceMonitor",
        "--expect-kind",
        "PrometheusRule",
        "--expect-kind",
        "Ingress",
    ]);
}

/// Values that cannot work fail the render with the chart's own message,
/// which names the value.
#[test]
fn helm_chart_refuses_bad_values_with_its_own_message() {
    let cases: [(&str, &str); 6] = [
        ("", "database.host is required"),
        ("redis.host=redis", "database.host is required"),
        (
            "database.host=db,database.sslMode=verify",
            "database.sslMode must be one of disable, prefer, require, verify-ca, verify-full",
        ),
        (
            "database.host=db,tempo.autoscaling.mode=lag",
            "tempo.autoscaling.mode must be auto, keda, hpa or none",
        ),
        (
            "database.host=db,kafka.sasl.enabled=true",
            "kafka.sasl.username is required",
        ),
        (
            "database.host=db,ingress.enabled=true",
            "ingress.hosts is required",
        ),
    ];
    for (set, message) in cases {
        let mut args = vec!["helm"];
        if !set.is_empty() {
            args.extend(["--set", set]);
        }
        args.extend(["--expect-fail", message]);
        assert_checks(&args);
    }
}

/// The checks are not blind: a chart rendered with a writable root
/// filesystem, without resources, or failing to fail, is reported.
#[test]
fn helm_checks_catch_a_broken_rendering() {
    let (ok, text) = check(&[
        "helm",
        "--set",
        "database.host=db,containerSecurityContext.readOnlyRootFilesystem=false",
    ]);
    assert!(
        !ok && text.contains("readOnlyRootFilesystem must be true"),
        "{text}"
    );
    let (ok, text) = check(&["helm", "--set", "database.host=db,api.resources=null"]);
    assert!(
        !ok && text.contains("resources.requests.cpu is missing"),
        "{text}"
    );
    let (ok, text) = check(&[
        "helm",
        "--set",
        "database.host=db",
        "--expect-fail",
        "database.host is required",
    ]);
    assert!(!ok && text.contains("renders, but must fail"), "{text}");
}

#[test]
fn helm_chart_lints_clean_and_every_value_is_documented() {
    assert_checks(&["helm-lint", "--set", "database.host=db,redis.host=redis"]);
    assert_checks(&[
        "helm-lint",
        "-f",
        "integration/deploy-check/helm-values/everything.yaml",
    ]);
    assert_checks(&["helm-docs"]);
}

/// Images, ports, probes, security contexts, resources, grace periods,
/// variable names, autoscalers and disruption budgets: the chart's defaults
/// are the kustomize base's, component by component.
#[test]
fn helm_chart_agrees_with_the_kustomize_base() {
    assert_checks(&["helm-agree"]);
}

// --- docker-compose.yml -------------------------------------------------------

#[test]
fn compose_file_validates() {
    let out = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(root())
        .output()
        .expect("docker-compose is missing: run integration/deploy-check/install.sh");
    assert!(
        out.status.success(),
        "docker-compose config refused docker-compose.yml:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_checks(&["compose", "docker-compose.yml"]);
}

#[test]
fn compose_check_catches_a_broken_file() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    // A key services do not have, a list where a string belongs.
    let broken = text
        .replacen("  redis:\n", "  redis:\n    replicas_count: 2\n", 1)
        .replacen(
            "KAFKA_TRACES_PARTITIONS: \"16\"",
            "KAFKA_TRACES_PARTITIONS: [16]",
            1,
        );
    let path =
        std::env::temp_dir().join(format!("deploy-check-compose-{}.yml", std::process::id()));
    std::fs::write(&path, broken).unwrap();
    let (ok, out) = check(&["compose", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    assert!(!ok, "the broken compose file passed:\n{out}");
    assert!(out.contains("'replicas_count' was unexpected"), "{out}");
    assert!(out.contains("services.collector.environment:"), "{out}");
}

// --- ECS ----------------------------------------------------------------------

#[test]
fn ecs_task_definition_validates() {
    assert_checks(&["ecs", "deploy/ecs/collector-task-definition.json"]);

    let text =
        std::fs::read_to_string(root().join("deploy/ecs/collector-task-definition.json")).unwrap();
    let broken = text
        .replacen("\"cpu\": \"2048\"", "\"cpu\": 2048", 1)
        .replacen(
            "\"essential\": true",
            "\"essential\": true, \"cpuShares\": 3",
            1,
        )
        .replacen(
            "\"readonlyRootFilesystem\": true",
            "\"readonlyRootFilesystem\": false",
            1,
        );
    let path = std::env::temp_dir().join(format!("deploy-check-ecs-{}.json", std::process::id()));
    std::fs::write(&path, broken).unwrap();
    let (ok, out) = check(&["ecs", &path.display().to_string()]);
    let _ = std::fs::remove_file(&path);
    assert!(!ok, "the broken task definition passed:\n{out}");
    for expected in [
        "Invalid type for parameter cpu",
        "Unknown parameter in containerDefinitions[0]: \"cpuShares\"",
        "readonlyRootFilesystem must be true",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
}

// --- Dockerfile ----------------------------------------------------------------

/// The stages of a Dockerfile: name -> (base, instructions).
fn stages(dockerfile: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut logical = String::new();
    for line in dockerfile.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            logical.push_str(part);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let instruction = std::mem::take(&mut logical).trim().to_owned();
        let words: Vec<&str> = instruction.split_whitespace().collect();
        if words[0].eq_ignore_ascii_case("FROM") {
            let name = match words.as_slice() {
                [_, _, as_, name] if as_.eq_ignore_ascii_case("AS") => name.to_string(),
                _ => String::new(),
            };
            out.push((name, words[1].to_owned(), Vec::new()));
        } else if let Some(stage) = out.last_mut() {
            stage.2.push(instruction);
        }
    }
    out
}

#[test]
fn dockerfile_has_a_non_root_target_with_a_health_check_per_binary() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = stages(&text);
    let find = |name: &str| stages.iter().find(|s| s.0 == name);
    // Every COPY --from names an earlier stage.
    for (i, (name, _, instructions)) in stages.iter().enumerate() {
        for ins in instructions {
            if let Some(rest) = ins
                .split_whitespace()
                .find_map(|w| w.strip_prefix("--from="))
            {
                assert!(
                    stages[..i].iter().any(|s| s.0 == rest),
                    "stage {name}: COPY --from={rest} names no earlier stage"
                );
            }
        }
    }
    // Dependencies are built before the sources are copied in.
    let builder = find("builder").expect("a builder stage");
    let cook = builder.2.iter().position(|i| i.contains("cargo chef cook"));
    let copy_all = builder.2.iter().position(|i| i.starts_with("COPY . ."));
    assert!(
        matches!((cook, copy_all), (Some(c), Some(a)) if c < a),
        "the builder must cook the dependencies before COPY . ."
    );
    let runtime = find("runtime").expect("a runtime stage");
    assert!(runtime.1.contains("slim"), "the runtime is a slim image");
    let user = runtime
        .2
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("the runtime sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "USER must be a numeric non-root uid, is {user}"
    );
    for (target, binary) in [
        ("collector", "observatory-collector"),
        ("consumer", "observatory-consumer"),
        ("api", "observatory-api"),
    ] {
        let stage = find(target).unwrap_or_else(|| panic!("no target {target}"));
        assert_eq!(
            stage.1, "runtime",
            "target {target} builds on the runtime stage"
        );
        assert!(
            stage.2.iter().all(|i| !i.starts_with("USER")),
            "target {target} must not change the user"
        );
        assert!(
            stage
                .2
                .iter()
                .any(|i| i.starts_with("HEALTHCHECK") && i.contains("/healthz")),
            "target {target} has no HEALTHCHECK on /healthz"
        );
        assert!(
            stage
                .2
                .iter()
                .any(|i| i.starts_with("ENTRYPOINT") && i.contains(binary)),
            "target {target} does not run {binary}"
        );
    }
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for path in ["target/", ".stack/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l == path),
            ".dockerignore must exclude {path}"
        );
    }
}

// --- settings ------------------------------------------------------------------

/// The environment variables in a `--help` text (`[env: NAME=...]`, `[env: NAME]`).
fn help_envs(help: &str) -> BTreeSet<String> {
    help.match_indices("[env: ")
        .map(|(i, m)| {
            help[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// The subcommands a `--help` text lists (its "Commands:" section, less `help`).
fn help_commands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("  ") {
                break;
            }
            let name = line.split_whitespace().next().unwrap_or_default();
            if !name.is_empty() && name != "help" {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// Settings per command of every binary: "observatory-consumer timescale" ->
/// its variables, from `--help` of each binary and (recursively) subcommand.
fn binary_settings() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(bin: &Path, path: &mut Vec<String>, out: &mut BTreeMap<String, BTreeSet<String>>) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = Command::new(bin)
            .args(&args)
            .output()
            .expect("the binary runs");
        assert!(o.status.success(), "{} {args:?} failed", bin.display());
        let help = String::from_utf8_lossy(&o.stdout).into_owned();
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        let key = std::iter::once(name)
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        out.insert(key, help_envs(&help));
        for sub in help_commands(&help) {
            path.push(sub);
            walk(bin, path, out);
            path.pop();
        }
    }
    let mut out = BTreeMap::new();
    for bin in [
        "observatory-collector",
        "observatory-consumer",
        "observatory-api",
    ] {
        walk(&workspace_bin(bin), &mut Vec::new(), &mut out);
    }
    out
}

/// Variables our binaries read outside their flags: the log filter, and the
/// TLS roots of rustls-native-certs.
const READ_OUTSIDE_FLAGS: [&str; 3] = ["RUST_LOG", "SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Whether object_store (the Tempo sink's and the API's object-store client)
/// reads `name` from the environment: its builders take every `AWS_*`,
/// `GOOGLE_*` and `AZURE_*` variable whose lowercase name parses as one of
/// their configuration keys, and nothing else.
fn object_store_reads(name: &str) -> bool {
    use object_store::aws::AmazonS3ConfigKey;
    use object_store::azure::AzureConfigKey;
    use object_store::gcp::GoogleConfigKey;
    let lower = name.to_ascii_lowercase();
    (name.starts_with("AWS_") && lower.parse::<AmazonS3ConfigKey>().is_ok())
        || (name.starts_with("GOOGLE_") && lower.parse::<GoogleConfigKey>().is_ok())
        || (name.starts_with("AZURE_") && lower.parse::<AzureConfigKey>().is_ok())
}

/// Whether a command uses object storage (and so object_store's variables).
fn uses_object_store(command: &str) -> bool {
    command == "observatory-api"
        || command.starts_with("observatory-consumer tempo")
        || command.starts_with("observatory-consumer compact")
        || command.starts_with("observatory-consumer replay")
        || command.starts_with("observatory-consumer dlq")
}

/// The variables a command reads: its own flags, the top-level ones of its
/// binary (global or flattened), and those read outside the flags.
fn reads(settings: &BTreeMap<String, BTreeSet<String>>, command: &str, name: &str) -> bool {
    let binary = command.split(' ').next().unwrap_or_default();
    settings.get(command).is_some_and(|s| s.contains(name))
        || settings.get(binary).is_some_and(|s| s.contains(name))
        || READ_OUTSIDE_FLAGS.contains(&name)
        || (uses_object_store(command) && object_store_reads(name))
}

/// The variable names of the settings table in docs/deployment.md: the first
/// cell (one backticked name) of every table row under "## Environment variables".
fn documented(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut inside = false;
    for line in markdown.lines() {
        if line.starts_with("## ") {
            inside = line.trim() == "## Environment variables";
            continue;
        }
        if !inside || !line.starts_with("| `") {
            continue;
        }
        let cell = line.split('|').nth(1).unwrap_or_default().trim();
        if let Some(name) = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
            out.insert(name.to_owned());
        }
    }
    out
}

/// Problems of a documented table against the binaries' settings: names no
/// binary reads, and names a binary reads that are not documented.
fn docs_problems(
    settings: &BTreeMap<String, BTreeSet<String>>,
    documented: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let all: BTreeSet<&String> = settings.values().flatten().collect();
    for (command, names) in settings {
        for name in names {
            if !documented.contains(name) {
                problems.push(format!(
                    "{name} (read by {command}) is not in docs/deployment.md"
                ));
            }
        }
    }
    for name in documented {
        if !all.contains(name)
            && !READ_OUTSIDE_FLAGS.contains(&name.as_str())
            && !object_store_reads(name)
        {
            problems.push(format!("{name} is documented, but no binary reads it"));
        }
    }
    problems
}

/// The command a container runs: binary (collector, consumer, api) and
/// subcommand, as a key of [`binary_settings`].
fn command_of(binary: &str, sub: Option<&str>) -> String {
    let bin = format!("observatory-{binary}");
    match (binary, sub) {
        ("api", Some("token")) => format!("{bin} token"),
        ("api", _) | ("collector", _) => bin,
        (_, Some(sub)) => format!("{bin} {sub}"),
        (_, None) => bin,
    }
}

/// Problems of the variables given to each container: names its command does
/// not read, and essential settings left out.
fn deployment_problems(
    settings: &BTreeMap<String, BTreeSet<String>>,
    containers: &BTreeMap<String, (String, BTreeSet<String>)>,
) -> Vec<String> {
    let essential: [(&str, &[&str]); 6] = [
        ("observatory-consumer compact", &["OBJECT_STORE_URL"]),
        ("observatory-collector", &["KAFKA_BROKERS"]),
        (
            "observatory-consumer timescale",
            &["KAFKA_BROKERS", "KAFKA_GROUP_ID", "DATABASE_URL"],
        ),
        (
            "observatory-consumer tempo",
            &["KAFKA_BROKERS", "KAFKA_GROUP_ID", "OBJECT_STORE_URL"],
        ),
        ("observatory-consumer migrate", &["DATABASE_URL"]),
        ("observatory-api", &["DATABASE_URL", "JWT_SECRET"]),
    ];
    let mut problems = Vec::new();
    for (where_, (command, names)) in containers {
        if !settings.contains_key(command) {
            problems.push(format!(
                "{where_}: runs {command:?}, which is no command of our binaries"
            ));
            continue;
        }
        for name in names {
            if !reads(settings, command, name) {
                problems.push(format!(
                    "{where_}: sets {name}, which {command} does not read"
                ));
            }
        }
        for (cmd, needed) in essential {
            if cmd == command {
                for n in needed.iter().filter(|n| !names.contains(**n)) {
                    problems.push(format!("{where_}: {command} needs {n}"));
                }
            }
        }
    }
    problems
}

/// Our containers in compose, the rendered overlays and the ECS task
/// definition: where -> (command, variables).
fn deployed_containers() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let out = run(&python(), &[&checker().display().to_string(), "envs"]);
    assert!(
        out.status.success(),
        "deploy_check.py envs failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("envs prints JSON");
    let mut out = BTreeMap::new();
    for (where_, c) in value.as_object().expect("an object") {
        let binary = c["binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{where_}: not one of our images"));
        let command = command_of(binary, c["command"].as_str());
        let names = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        out.insert(where_.clone(), (command, names));
    }
    out
}

#[test]
fn every_setting_is_documented_and_every_deployed_setting_is_read() {
    let settings = binary_settings();
    assert!(
        settings["observatory-consumer timescale"].contains("DATABASE_URL")
            && settings["observatory-api"].contains("JWT_SECRET")
            && settings["observatory-collector"].contains("KAFKA_BROKERS"),
        "--help lists no settings: {settings:?}"
    );
    let docs = std::fs::read_to_string(root().join("docs/deployment.md")).unwrap();
    let table = documented(&docs);
    let problems = docs_problems(&settings, &table);
    assert!(
        problems.is_empty(),
        "docs/deployment.md:\n{}",
        problems.join("\n")
    );

    let containers = deployed_containers();
    assert!(
        containers
            .keys()
            .any(|w| w.starts_with("docker-compose.yml"))
            && containers
                .keys()
                .any(|w| w.starts_with("k8s/overlays/azure"))
            && containers.keys().any(|w| w.starts_with("deploy/ecs"))
            && containers
                .keys()
                .any(|w| w.starts_with("deploy/helm/llm-observatory (everything)")),
        "envs found no containers: {containers:?}"
    );
    let problems = deployment_problems(&settings, &containers);
    assert!(
        problems.is_empty(),
        "deployment files:\n{}",
        problems.join("\n")
    );
}

#[test]
fn settings_checks_catch_unknown_misspelled_and_undocumented_names() {
    let settings: BTreeMap<String, BTreeSet<String>> = [
        (
            "observatory-api",
            vec!["DATABASE_URL", "JWT_SECRET", "LOG_FORMAT"],
        ),
        ("observatory-api token", vec![]),
        ("observatory-collector", vec!["KAFKA_BROKERS"]),
        ("observatory-consumer", vec!["LOG_FORMAT"]),
        (
            "observatory-consumer timescale",
            vec!["DATABASE_URL", "KAFKA_BROKERS", "KAFKA_GROUP_ID"],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    // Documentation: one missing, one documented that nothing reads.
    let table = names(&[
        "DATABASE_URL",
        "JWT_SECRET",
        "LOG_FORMAT",
        "KAFKA_BROKERS",
        "DB_POOL_MAX_SIZE",
        "RUST_LOG",
        "AWS_ENDPOINT",
    ]);
    let problems = docs_problems(&settings, &table);
    assert_eq!(
        problems,
        [
            "KAFKA_GROUP_ID (read by observatory-consumer timescale) is not in docs/deployment.md",
            "DB_POOL_MAX_SIZE is documented, but no binary reads it",
        ]
    );

    // Deployment: a setting of another binary, a misspelled AWS variable
    // (object_store ignores it), a cloud variable on a binary without object
    // storage, a missing essential one, an unknown command.
    let containers: BTreeMap<String, (String, BTreeSet<String>)> = [
        (
            "api",
            (
                "observatory-api",
                names(&[
                    "DATABASE_URL",
                    "JWT_SECRET",
                    "AWS_ACCESS_KEY",
                    "AWS_ACCESS_KEY_ID",
                    "KAFKA_BROKERS",
                    "RUST_LOG",
                ]),
            ),
        ),
        (
            "sink",
            (
                "observatory-consumer timescale",
                names(&["DATABASE_URL", "KAFKA_BROKERS", "AWS_REGION"]),
            ),
        ),
        ("tool", ("observatory-consumer compact", names(&[]))),
    ]
    .into_iter()
    .map(|(k, (c, n))| (k.to_owned(), (c.to_owned(), n)))
    .collect();
    let problems = deployment_problems(&settings, &containers);
    assert_eq!(
        problems,
        [
            "api: sets AWS_ACCESS_KEY, which observatory-api does not read",
            "api: sets KAFKA_BROKERS, which observatory-api does not read",
            "sink: sets AWS_REGION, which observatory-consumer timescale does not read",
            "sink: observatory-consumer timescale needs KAFKA_GROUP_ID",
            "tool: runs \"observatory-consumer compact\", which is no command of our binaries",
        ]
    );

    // The parsers.
    assert_eq!(
        help_envs("      --a <A>  x [env: KAFKA_BROKERS=127.0.0.1:9092]\n      --b <B>  [env: DATABASE_URL]\n"),
        names(&["DATABASE_URL", "KAFKA_BROKERS"])
    );
    assert_eq!(
        help_commands(
            "Usage: x\n\nCommands:\n  timescale  Consume\n  help       Print\n\nOptions:\n  -h\n"
        ),
        ["timescale"]
    );
    assert_eq!(
        documented(
            "## Environment variables\n\n| `A_B` | x |\n| `C` | y |\n\n## Other\n\n| `D` | z |\n"
        ),
        names(&["A_B", "C"])
    );
}
