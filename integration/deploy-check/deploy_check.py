#!/usr/bin/env python3
"""Offline checks of LLM Observatory's deployment files.

Run by integration/tests/deployment.rs with the virtualenv that
integration/deploy-check/install.sh makes; no Docker engine, no cluster.

    deploy_check.py k8s [--partial] DIR...
                                     render each kustomization (kubectl kustomize) and check
                                     it (--partial: a base, whose sinks have no autoscaler)
    deploy_check.py k8s-files FILE.. check standalone manifests (the Secret templates)
    deploy_check.py compose FILE     check a compose file against the Compose specification
    deploy_check.py ecs FILE         check an ECS task definition against the ECS API model
    deploy_check.py envs             print, as JSON, every environment variable that
                                     docker-compose.yml, the rendered overlays and the ECS
                                     task definition give to each of our containers

Kubernetes objects are validated strictly (unknown fields are errors)
against Kubernetes' own OpenAPI schemas (kubernetes-validate, offline) and
KEDA ScaledObjects against KEDA's CRD types (cloudcoil-models-keda, generated
from KEDA's CRDs), then against the rules of docs/deployment.md: non-root,
read-only root filesystem, probes on /healthz and /readyz, requests and
limits, autoscalers and disruption budgets that point at real Deployments.
Every problem is printed, one per line; the exit status is 1 if there was any.
"""

import argparse
import json
import os
import subprocess
import sys
import typing

import yaml

# The Kubernetes version the manifests must be valid for (EKS, GKE and AKS
# all run it or later).
K8S_VERSION = "1.31.0"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUR_IMAGES = ("collector", "consumer", "api")
SECRET_TEMPLATES = ["k8s/base/secrets.example.yaml"]
OVERLAYS = ["k8s/overlays/aws", "k8s/overlays/gcp", "k8s/overlays/azure", "k8s/overlays/plain"]


class Problems:
    """Collects problems; each names the file or object it is about."""

    def __init__(self):
        self.items = []

    def add(self, where, what):
        self.items.append(f"{where}: {what}")

    def exit(self):
        for item in self.items:
            print(item)
        if self.items:
            print(f"{len(self.items)} problem(s)", file=sys.stderr)
            sys.exit(1)
        print("ok")


def kustomize(path):
    """The objects `kubectl kustomize path` renders."""
    done = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def obj_name(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- schema validation -------------------------------------------------------


def unknown_keys(value, annotation, path, out):
    """Keys of `value` that the pydantic type `annotation` does not declare
    (pydantic ignores them; the API server's strict field validation does not)."""
    import pydantic

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return unknown_keys(value, args[0], path, out)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in args:
            if arg is type(None):
                continue
            unknown_keys(value, arg, path, out)
        return
    if origin in (list, typing.List) and isinstance(value, list):
        for i, item in enumerate(value):
            unknown_keys(item, args[0], f"{path}[{i}]", out)
        return
    if origin in (dict, typing.Dict) and isinstance(value, dict):
        for k, item in value.items():
            unknown_keys(item, args[1], f"{path}.{k}", out)
        return
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel) and isinstance(value, dict):
        fields = {(f.alias or name): f.annotation for name, f in annotation.model_fields.items()}
        for k, item in value.items():
            if k not in fields:
                out.append(f"{path}.{k}: unknown field")
            else:
                unknown_keys(item, fields[k], f"{path}.{k}", out)


def validate_keda(doc, where, problems):
    import pydantic
    from cloudcoil.models.keda import v1alpha1

    model = getattr(v1alpha1, doc.get("kind", ""), None)
    if model is None:
        problems.add(where, f"unknown KEDA kind {doc.get('kind')}")
        return
    try:
        model.model_validate(doc)
    except pydantic.ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            problems.add(where, f"{loc}: {err['msg']}")
    extra = []
    unknown_keys(doc.get("spec"), model.model_fields["spec"].annotation, "spec", extra)
    for item in extra:
        problems.add(where, item)


def validate_object(doc, where, problems):
    import kubernetes_validate

    if doc.get("apiVersion", "").startswith("keda.sh/"):
        validate_keda(doc, where, problems)
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        problems.add(where, f"{path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        problems.add(where, f"no Kubernetes {K8S_VERSION} schema for {doc.get('apiVersion')} {doc.get('kind')}: {e}")


# --- the rules of docs/deployment.md -----------------------------------------


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return doc["spec"]["template"]["spec"], doc["spec"]["template"]["metadata"].get("labels", {})
    return None, None


def image_of(container):
    """collector, consumer or api for our images, else None."""
    image = container.get("image", "")
    repo = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return repo if repo in OUR_IMAGES and "llm-observatory" in image else None


def check_pod(doc, where, problems):
    spec, _ = pod_spec(doc)
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        problems.add(where, "pod securityContext.runAsNonRoot must be true")
    if psc.get("runAsUser", 0) == 0:
        problems.add(where, "pod securityContext.runAsUser must be a non-zero uid")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.add(where, "pod securityContext.seccompProfile.type must be RuntimeDefault")
    for c in spec.get("containers", []):
        cw = f"{where} container {c.get('name')}"
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.add(cw, "securityContext.readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.add(cw, "securityContext.allowPrivilegeEscalation must be false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.add(cw, "securityContext.capabilities.drop must hold ALL")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}):
                    problems.add(cw, f"resources.{part}.{r} is missing")
        image = c.get("image", "")
        if image_of(c) is None:
            problems.add(cw, f"image {image!r} is not one of ours (llm-observatory/{{{','.join(OUR_IMAGES)}}})")
        if image.endswith(":latest") or (":" not in image.rsplit("/", 1)[-1] and "@" not in image):
            problems.add(cw, f"image {image!r} must have a fixed tag")
        if doc["kind"] == "Deployment":
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                got = c.get(probe, {}).get("httpGet", {}).get("path")
                if got != path:
                    problems.add(cw, f"{probe} must GET {path} (has {got!r})")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.add(cw, f"{probe} names port {port!r}, which the container does not declare")


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def check_references(objects, where, problems, secret_names, complete):
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    deployments = by_kind.get("Deployment", {})
    configmaps = by_kind.get("ConfigMap", {})
    for o in objects:
        spec, _ = pod_spec(o)
        if spec is None:
            continue
        for c in spec.get("containers", []):
            cw = f"{where} {obj_name(o)} container {c.get('name')}"
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef and ef["configMapRef"]["name"] not in configmaps:
                    problems.add(cw, f"envFrom config map {ef['configMapRef']['name']} does not exist")
                if "secretRef" in ef and ef["secretRef"]["name"] not in secret_names:
                    problems.add(cw, f"envFrom secret {ef['secretRef']['name']} has no template")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref.get("key") not in secret_names.get(ref.get("name"), set()):
                    problems.add(cw, f"env {e['name']}: secret {ref.get('name')} key {ref.get('key')} has no template")
    # Autoscalers, budgets and services must reach a Deployment.
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = hpa["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.add(where, f"HorizontalPodAutoscaler/{name} scales {target}, which does not exist")
    for name, so in by_kind.get("ScaledObject", {}).items():
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.add(where, f"ScaledObject/{name} scales {target}, which does not exist")
    # (A StatefulSet, the compactor's, counts as a target of budgets and services.)
    workloads = list(deployments.values()) + list(by_kind.get("StatefulSet", {}).values())
    for kind in ("PodDisruptionBudget", "Service"):
        for name, o in by_kind.get(kind, {}).items():
            sel = o["spec"]["selector"]
            sel = sel.get("matchLabels", {}) if kind == "PodDisruptionBudget" else sel
            if not any(labels_match(sel, pod_spec(d)[1]) for d in workloads):
                problems.add(where, f"{kind}/{name} selects no Deployment's pods")
    # Every Deployment has a disruption budget and an autoscaler.
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind.get("HorizontalPodAutoscaler", {}).values()}
    scaled |= {s["spec"]["scaleTargetRef"]["name"] for s in by_kind.get("ScaledObject", {}).values()}
    for name, d in deployments.items():
        if complete and name not in scaled:
            problems.add(where, f"Deployment/{name} has no HorizontalPodAutoscaler or ScaledObject")
        labels = pod_spec(d)[1]
        if not any(labels_match(p["spec"]["selector"].get("matchLabels"), labels) for p in by_kind.get("PodDisruptionBudget", {}).values()):
            problems.add(where, f"Deployment/{name} has no PodDisruptionBudget")
    # The collector: 3 to 10 replicas on 70% CPU.
    hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("observatory-collector")
    if hpa:
        s = hpa["spec"]
        cpu = [m["resource"]["target"].get("averageUtilization") for m in s.get("metrics", []) if m.get("type") == "Resource"]
        if (s.get("minReplicas"), s.get("maxReplicas"), cpu) != (3, 10, [70]):
            problems.add(where, f"collector HPA must scale 3 to 10 replicas on 70% CPU (has {s.get('minReplicas')} to {s.get('maxReplicas')} on {cpu})")
    # Each sink scales on its own consumer group's lag (the base leaves the
    # sinks' autoscalers to the components).
    for name in ("observatory-consumer-timescale", "observatory-consumer-tempo") if complete else ():
        d = deployments.get(name)
        if d is None:
            problems.add(where, f"Deployment/{name} is missing")
            continue
        c = pod_spec(d)[0]["containers"][0]
        group = next((e.get("value") for e in c.get("env", []) if e["name"] == "KAFKA_GROUP_ID"), None)
        lag = False
        for so in by_kind.get("ScaledObject", {}).values():
            if so["spec"]["scaleTargetRef"]["name"] == name:
                for t in so["spec"]["triggers"]:
                    m = t.get("metadata", {})
                    lag |= t.get("type") == "kafka" and (m.get("consumerGroup") == group or m.get("consumerGroupFromEnv") == "KAFKA_GROUP_ID")
        for h in by_kind.get("HorizontalPodAutoscaler", {}).values():
            if h["spec"]["scaleTargetRef"]["name"] == name:
                for m in h["spec"].get("metrics", []):
                    ext = m.get("external", {}).get("metric", {})
                    lag |= ext.get("name") == "observatory_consumer_lag_messages" and ext.get("selector", {}).get("matchLabels", {}).get("group") == group
        if not lag:
            problems.add(where, f"Deployment/{name} is not scaled on the lag of its group {group}")
    # A namespace-wide default deny, and PostgreSQL / Redis egress only for the labelled clients.
    policies = by_kind.get("NetworkPolicy", {})
    if not any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies.values()):
        problems.add(where, "no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    for port, label in ((5432, "llm-observatory.io/postgres-client"), (6379, "llm-observatory.io/redis-client")):
        for name, p in policies.items():
            for rule in p["spec"].get("egress", []):
                if any(pp.get("port") == port for pp in rule.get("ports", [])) and p["spec"]["podSelector"].get("matchLabels", {}).get(label) != "true":
                    problems.add(where, f"NetworkPolicy/{name} opens port {port} to pods without {label}")


def secret_templates():
    """Secret name -> its keys, from the templates."""
    names = {}
    for path in SECRET_TEMPLATES:
        for doc in load_yaml_docs(os.path.join(ROOT, path)):
            if doc.get("kind") == "Secret":
                names[doc["metadata"]["name"]] = set(doc.get("stringData", {})) | set(doc.get("data", {}))
    return names


def cmd_k8s(dirs, partial):
    problems = Problems()
    secrets = secret_templates()
    for d in dirs:
        try:
            objects = kustomize(d)
        except RuntimeError as e:
            problems.add(d, str(e))
            continue
        if not objects:
            problems.add(d, "renders nothing")
        for o in objects:
            where = f"{d} {obj_name(o)}"
            validate_object(o, where, problems)
            if pod_spec(o)[0] is not None:
                check_pod(o, where, problems)
        if any(o.get("kind") == "Deployment" for o in objects):
            check_references(objects, d, problems, secrets, not partial)
            check_durability(objects, d, problems)
    problems.exit()


def check_durability(objects, where, problems):
    """The collector of a production deployment creates topics with three
    replicas (and so min.insync.replicas 2) and runs with
    ENVIRONMENT=production (it then warns about single-replica topics)."""
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    for o in objects:
        spec, _ = pod_spec(o)
        if spec is None:
            continue
        for c in spec.get("containers", []):
            if image_of(c) != "collector":
                continue
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    for k, v in configmaps.get(ef["configMapRef"]["name"], {}).items():
                        env.setdefault(k, v)
            check_durable_env(env, f"{where} {obj_name(o)} container {c['name']}", problems)


def check_durable_env(env, where, problems):
    try:
        replication = int(env.get("KAFKA_REPLICATION_FACTOR") or 1)
    except ValueError:
        replication = 1
    if replication < 3:
        problems.add(where, "KAFKA_REPLICATION_FACTOR must be 3 or more in production (min.insync.replicas 2)")
    if env.get("ENVIRONMENT") != "production":
        problems.add(where, "ENVIRONMENT must be production")


def cmd_k8s_files(files):
    problems = Problems()
    for f in files:
        for o in load_yaml_docs(f):
            validate_object(o, f"{f} {obj_name(o)}", problems)
            if o.get("kind") == "Secret":
                for k, v in o.get("stringData", {}).items():
                    if v != "CHANGE-ME":
                        problems.add(f"{f} {obj_name(o)}", f"{k} must be the placeholder CHANGE-ME, never a value")
    problems.exit()


# --- compose -----------------------------------------------------------------


def cmd_compose(path):
    import jsonschema
    from check_jsonschema.builtin_schemas import get_builtin_schema

    problems = Problems()
    with open(path) as f:
        doc = yaml.safe_load(f)
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        problems.add(path, f"{'.'.join(str(p) for p in err.path)}: {err.message}")
    services = doc.get("services", {})
    needed = {"kafka", "timescaledb", "redis", "minio", "grafana"}
    missing = needed - set(services)
    if missing:
        problems.add(path, f"services missing: {sorted(missing)}")
    ours = {n: s for n, s in services.items() if compose_binary(s)}
    commands = {(compose_binary(s), (s.get("command") or [None])[0]) for s in ours.values()}
    for want in (("collector", None), ("consumer", "timescale"), ("consumer", "tempo"), ("api", None)):
        if want not in commands:
            problems.add(path, f"no service runs {want[0]} {want[1] or ''}".rstrip())
    for name, s in ours.items():
        if s.get("build", {}).get("target") != compose_binary(s):
            problems.add(f"{path} service {name}", "must build the Dockerfile target of its image")
    grafana = services.get("grafana", {})
    mounts = " ".join(grafana.get("volumes", []))
    if "deploy/grafana/provisioning" not in mounts:
        problems.add(f"{path} service grafana", "must mount deploy/grafana/provisioning")
    problems.exit()


def compose_binary(service):
    image = service.get("image", "")
    if image.startswith("llm-observatory/"):
        return image.split("/", 1)[1].split(":", 1)[0]
    return None


# --- ECS ---------------------------------------------------------------------


def cmd_ecs(path):
    import botocore.session
    from botocore.validate import ParamValidator

    problems = Problems()
    with open(path) as f:
        params = json.load(f)
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        for line in report.generate_report().splitlines():
            if line.strip() and not line.startswith("Parameter validation failed"):
                problems.add(path, line.strip())
    for c in params.get("containerDefinitions", []):
        cw = f"{path} container {c.get('name')}"
        if c.get("user", "root").split(":")[0] in ("", "0", "root"):
            problems.add(cw, "must run as a non-root user")
        if c.get("readonlyRootFilesystem") is not True:
            problems.add(cw, "readonlyRootFilesystem must be true")
        if not c.get("healthCheck"):
            problems.add(cw, "healthCheck is missing")
        for e in c.get("environment", []):
            if any(w in e.get("name", "") for w in ("SECRET", "PASSWORD", "API_KEYS", "DATABASE_URL", "PRODUCER_CONFIG")):
                problems.add(cw, f"{e['name']} must come from `secrets` (Secrets Manager or SSM), not `environment`")
        check_durable_env({e["name"]: e.get("value") for e in c.get("environment", [])}, cw, problems)
    problems.exit()


# --- environment variables given to our containers ---------------------------


def cmd_envs():
    """{"<where>": {"binary": ..., "command": ..., "env": [...]}} for every
    container of ours in docker-compose.yml, the rendered overlays and the
    ECS task definition."""
    out = {}
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    for name, s in compose.get("services", {}).items():
        binary = compose_binary(s)
        if not binary:
            continue
        command = s.get("command") or []
        entry = s.get("entrypoint") or []
        # `sh -c "... observatory-api token ..."`: the subcommand is in the script.
        if entry and "token" in " ".join(entry):
            command = ["token"]
        out[f"docker-compose.yml service {name}"] = {
            "binary": binary,
            "command": command[0] if command else None,
            "env": sorted((s.get("environment") or {}).keys()),
        }
    secrets = secret_templates()
    for overlay in OVERLAYS:
        objects = kustomize(os.path.join(ROOT, overlay))
        configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
        for o in objects:
            spec, _ = pod_spec(o)
            if spec is None:
                continue
            for c in spec.get("containers", []):
                names = {e["name"] for e in c.get("env", [])}
                for ef in c.get("envFrom", []):
                    if "configMapRef" in ef:
                        names |= set(configmaps.get(ef["configMapRef"]["name"], {}))
                    if "secretRef" in ef:
                        names |= secrets.get(ef["secretRef"]["name"], set())
                args = c.get("args") or c.get("command") or []
                out[f"{overlay} {obj_name(o)} container {c['name']}"] = {
                    "binary": image_of(c),
                    "command": args[0] if args else None,
                    "env": sorted(names),
                }
    path = os.path.join(ROOT, "deploy/ecs/collector-task-definition.json")
    with open(path) as f:
        ecs = json.load(f)
    for c in ecs["containerDefinitions"]:
        image = c["image"].rsplit("/", 1)[-1].split(":", 1)[0]
        names = {e["name"] for e in c.get("environment", [])} | {e["name"] for e in c.get("secrets", [])}
        cmd = c.get("command") or []
        out[f"deploy/ecs/collector-task-definition.json container {c['name']}"] = {
            "binary": image if image in OUR_IMAGES else None,
            "command": cmd[0] if cmd else None,
            "env": sorted(names),
        }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    k8s = sub.add_parser("k8s")
    k8s.add_argument("--partial", action="store_true", help="a base: no autoscaler completeness rules")
    k8s.add_argument("dirs", nargs="+")
    sub.add_parser("k8s-files").add_argument("files", nargs="+")
    sub.add_parser("compose").add_argument("file")
    sub.add_parser("ecs").add_argument("file")
    sub.add_parser("envs")
    args = parser.parse_args()
    if args.cmd == "k8s":
        cmd_k8s(args.dirs, args.partial)
    elif args.cmd == "k8s-files":
        cmd_k8s_files(args.files)
    elif args.cmd == "compose":
        cmd_compose(args.file)
    elif args.cmd == "ecs":
        cmd_ecs(args.file)
    else:
        cmd_envs()


if __name__ == "__main__":
    main()
