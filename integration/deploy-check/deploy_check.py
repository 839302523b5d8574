#!/usr/bin/env python3
"""Offline checks of LLM Observatory's deployment files.

Run by integration/tests/e2e/deployment.rs with the virtualenv that
integration/deploy-check/install.sh makes; no Docker engine, no cluster.

    deploy_check.py k8s [--partial] DIR...
                                     render each kustomization (kubectl kustomize) and check
                                     it (--partial: a base, whose sinks have no autoscaler)
    deploy_check.py k8s-files FILE.. check standalone manifests (the Secret templates)
    deploy_check.py compose FILE     check a compose file against the Compose specification
    deploy_check.py ecs FILE         check an ECS task definition against the ECS API model
    deploy_check.py envs             print, as JSON, every environment variable that
                                     docker-compose.yml, the rendered overlays, the Helm
                                     chart and the ECS task definition give to each of our
                                     containers
    deploy_check.py helm [--set k=v].. [-f FILE].. [--api-versions V,..] [--expect-fail TEXT]
                         [--expect-kind KIND]..
                                     render the Helm chart (Helm's own engine, helm-python-sdk)
                                     with those values and check it as the overlays are
                                     checked; --expect-fail: the render must fail saying TEXT;
                                     --expect-kind: an object of KIND must be among them
    deploy_check.py helm-lint [--set k=v].. [-f FILE]..   Helm's linter on the chart (strict)
    deploy_check.py helm-docs        every value of the chart's values.yaml is in
                                     docs/deployment.md's table of the chart's values
    deploy_check.py helm-agree       the chart with defaults against k8s/base: same images,
                                     ports, probes, security contexts, resources and
                                     variable names, component by component

Kubernetes objects are validated strictly (unknown fields are errors)
against Kubernetes' own OpenAPI schemas (kubernetes-validate, offline) and
KEDA ScaledObjects against KEDA's CRD types (cloudcoil-models-keda, generated
from KEDA's CRDs), the Prometheus Operator's objects by their shape, then against the rules of docs/deployment.md: non-root,
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
CHART = "deploy/helm/llm-observatory"
# The release of the deployment guide's command.
RELEASE, NAMESPACE = "llm-observatory", "observatory"
# The chart's values with every optional part switched on.
HELM_EVERYTHING = "integration/deploy-check/helm-values/everything.yaml"


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
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
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


def containers(objects):
    """(object, container) of every workload among `objects`."""
    for o in objects:
        spec, _ = pod_spec(o)
        for c in (spec or {}).get("containers", []):
            yield o, c


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
    hpa = next((h for n, h in by_kind.get("HorizontalPodAutoscaler", {}).items() if n.endswith("-collector")), None)
    if hpa:
        s = hpa["spec"]
        cpu = [m["resource"]["target"].get("averageUtilization") for m in s.get("metrics", []) if m.get("type") == "Resource"]
        if (s.get("minReplicas"), s.get("maxReplicas"), cpu) != (3, 10, [70]):
            problems.add(where, f"collector HPA must scale 3 to 10 replicas on 70% CPU (has {s.get('minReplicas')} to {s.get('maxReplicas')} on {cpu})")
    # Each sink scales on its own consumer group's lag (the base leaves the
    # sinks' autoscalers to the components).
    for sink in ("consumer-timescale", "consumer-tempo") if complete else ():
        name = next((n for n in deployments if n.endswith(f"-{sink}")), None)
        if name is None:
            problems.add(where, f"the Deployment of {sink} is missing")
            continue
        d = deployments[name]
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
    # (The chart's selects its release's pods: the namespace may hold others.)
    every_pod = lambda sel: sel == {} or set(sel) == {"matchLabels"} and set(sel["matchLabels"]) == {"app.kubernetes.io/instance"}
    if not any(every_pod(p["spec"].get("podSelector")) and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies.values()):
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
    for o, c in containers(objects):
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


# --- the Helm chart ----------------------------------------------------------
#
# Rendered by Helm's own template engine and linter, in-process: the PyPI
# package helm-python-sdk wraps the Helm Go SDK (no `helm` binary, no
# cluster). `lookup` finds nothing, as under `helm template`.


class RenderFailed(Exception):
    pass


def set_values(pairs, files):
    """The values of `-f FILE`.. then `--set k=v`.., merged as helm does."""
    import helm_python as helm

    values = {}
    for path in files:
        with open(os.path.join(ROOT, path) if not os.path.isabs(path) else path) as f:
            deep_merge(values, yaml.safe_load(f) or {})
    for pair in pairs:
        deep_merge(values, helm.parse_set_string(pair))
    return values


def deep_merge(into, other):
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = v
    return into


def helm_render(values, api_versions=()):
    """(objects, notes) of the chart rendered with `values` as release
    llm-observatory in namespace observatory. With api_versions, the
    cluster's Capabilities.APIVersions also has those (the wrapper does not
    expose the option; the pinned version's native call does)."""
    import helm_python as helm
    from helm_python import _native

    with helm.Chart.load(os.path.join(ROOT, CHART)) as chart:
        try:
            if api_versions:
                opts = {"name": RELEASE, "namespace": NAMESPACE, "api_versions": list(api_versions)}
                out = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts)))
            else:
                out = chart.render(values, name=RELEASE, namespace=NAMESPACE)
        except helm.HelmError as e:
            raise RenderFailed(str(e)) from e
    objects, notes = [], ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        try:
            objects += [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as e:
            raise RenderFailed(f"{path} is not YAML: {e}") from e
    return objects, notes


def chart_values(values):
    """The chart's values.yaml with `values` merged over it."""
    with open(os.path.join(ROOT, CHART, "values.yaml")) as f:
        return deep_merge(yaml.safe_load(f), values)


def external_secrets(values):
    """Secret name -> keys of the Secrets the values say the user made."""
    v = chart_values(values)
    out = {}

    def add(name, *keys):
        if name:
            out.setdefault(name, set()).update(keys)

    add(v["database"]["existingSecret"], v["database"]["secretKeys"]["passwordKey"])
    add(v["redis"]["existingSecret"], v["redis"]["secretKeys"]["passwordKey"])
    add(v["auth"]["existingSecret"], v["auth"]["secretKeys"]["jwtSecretKey"])
    add(v["kafka"]["existingSecret"], *v["kafka"]["secretKeys"].values())
    add(v["collector"]["apiKeys"]["existingSecret"], v["collector"]["apiKeys"]["secretKey"])
    add(v["objectStore"]["existingSecret"])
    return out


def check_monitoring(doc, where, problems):
    """The Prometheus Operator's objects, by shape (their CRDs are not in
    Kubernetes' schemas)."""
    spec = doc.get("spec", {})
    if doc["kind"] == "ServiceMonitor":
        if not spec.get("selector", {}).get("matchLabels") or not spec.get("endpoints"):
            problems.add(where, "a ServiceMonitor needs spec.selector.matchLabels and spec.endpoints")
    elif doc["kind"] == "PrometheusRule":
        rules = load_yaml_docs(os.path.join(ROOT, "deploy/alerts/observatory.rules.yaml"))[0]
        if spec.get("groups") != rules.get("groups"):
            problems.add(where, "the groups are not those of deploy/alerts/observatory.rules.yaml")
    else:
        problems.add(where, f"unknown monitoring kind {doc['kind']}")


def check_chart_objects(objects, where, problems, values):
    secrets = {o["metadata"]["name"]: set(o.get("data") or {}) | set(o.get("stringData") or {}) for o in objects if o["kind"] == "Secret"}
    for name, keys in external_secrets(values).items():
        secrets.setdefault(name, set()).update(keys)
    for o in objects:
        w = f"{where} {obj_name(o)}"
        if o.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            check_monitoring(o, w, problems)
        else:
            validate_object(o, w, problems)
        if pod_spec(o)[0] is not None:
            check_pod(o, w, problems)
        if o.get("metadata", {}).get("namespace") not in (None, NAMESPACE):
            problems.add(w, "must not set a namespace other than the release's")
    # Every Deployment autoscaled, unless a sink was left at fixed replicas.
    complete = all(
        any(t["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"] for t in objects if t["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"))
        for d in objects
        if d["kind"] == "Deployment" and "-consumer-" in d["metadata"]["name"]
    )
    check_references(objects, where, problems, secrets, complete)
    check_durability(objects, where, problems)
    # KEDA's credentials: rendered, or named by the values.
    auths = {o["metadata"]["name"] for o in objects if o["kind"] == "TriggerAuthentication"}
    auths.add(chart_values(values)["kafka"]["keda"]["authenticationRef"])
    for o in objects:
        if o["kind"] == "TriggerAuthentication":
            for ref in o["spec"].get("secretTargetRef", []):
                if ref["key"] not in secrets.get(ref["name"], set()):
                    problems.add(f"{where} {obj_name(o)}", f"secret {ref['name']} has no key {ref['key']}")
        if o["kind"] == "ScaledObject":
            for t in o["spec"]["triggers"]:
                name = t.get("authenticationRef", {}).get("name")
                if name and name not in auths:
                    problems.add(f"{where} {obj_name(o)}", f"authenticationRef {name} is no TriggerAuthentication")
                if t.get("metadata", {}).get("sasl") not in (None, "plaintext", "scram_sha256", "scram_sha512"):
                    problems.add(f"{where} {obj_name(o)}", f"sasl {t['metadata']['sasl']!r} is no mode of KEDA's Kafka scaler")
    # secretKeyRefs that are optional in the base are not in the chart: a
    # reference is there only when its value was given.
    for o, c in containers(objects):
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref.get("optional"):
                problems.add(f"{where} {obj_name(o)} container {c['name']}", f"env {e['name']}: the chart gives a secret only when it exists (optional)")


def cmd_helm(pairs, files, api_versions, expect_fail, expect_kinds):
    problems = Problems()
    values = set_values(pairs, files)
    where = " ".join([CHART] + [f"-f {f}" for f in files] + [f"--set {p}" for p in pairs])
    try:
        objects, notes = helm_render(values, api_versions)
    except RenderFailed as e:
        if expect_fail is None:
            problems.add(where, f"does not render: {e}")
        elif expect_fail not in str(e):
            problems.add(where, f"fails, but not saying {expect_fail!r}: {e}")
        problems.exit()
        return
    if expect_fail is not None:
        problems.add(where, f"renders, but must fail saying {expect_fail!r}")
        problems.exit()
    if not notes.strip():
        problems.add(where, "NOTES.txt renders empty")
    check_chart_objects(objects, where, problems, values)
    kinds = {o["kind"] for o in objects}
    for kind in expect_kinds:
        if kind not in kinds:
            problems.add(where, f"renders no {kind}")
    problems.exit()


def cmd_helm_lint(pairs, files):
    import helm_python as helm

    problems = Problems()
    values = set_values(pairs, files)
    report = helm.lint(os.path.join(ROOT, CHART), values, strict=True, namespace=NAMESPACE)
    for m in report.get("messages", []):
        # 1 info, 2 warning, 3 error; "icon is recommended" is an info.
        if m.get("severity", 0) >= 2:
            problems.add(f"{CHART}/{m.get('path')}", m.get("error"))
    for e in report.get("errors", []):
        problems.add(CHART, e)
    problems.exit()


# values.yaml keys whose value is a map of the user's own keys (documented as one).
OPAQUE_VALUES = {"env", "resources", "podSecurityContext", "containerSecurityContext", "secretKeys", "image"}
PLACEHOLDERS = {
    "<component>": ["collector", "timescale", "tempo", "compactor", "api", "migrate"],
    "<sink>": ["timescale", "tempo"],
}


def value_paths(values, prefix=""):
    """The documented unit of values.yaml: leaves, and maps of the user's own keys."""
    for k, v in values.items():
        path = f"{prefix}.{k}" if prefix else k
        # (The top-level image is documented value by value; a component's as one.)
        if isinstance(v, dict) and v and (k not in OPAQUE_VALUES or (k == "image" and not prefix)):
            yield from value_paths(v, path)
        else:
            yield path


def documented_values(markdown):
    """The value names of the table under "### The chart's values": each
    backticked name of a row's first cell; a bare name continues the
    previous name's parent; placeholders expand."""
    names, inside = set(), False
    for line in markdown.splitlines():
        if line.startswith("#"):
            inside = line.strip() == "### The chart's values"
            continue
        if not inside or not line.startswith("| `"):
            continue
        parent = ""
        for token in line.split("|")[1].split("`")[1::2]:
            if "." not in token and parent:
                token = f"{parent}.{token}"
            parent = token.rsplit(".", 1)[0] if "." in token else ""
            expanded = [token]
            for ph, comps in PLACEHOLDERS.items():
                expanded = [t.replace(ph, c) for t in expanded for c in comps] if any(ph in t for t in expanded) else expanded
            names.update(expanded)
    return names


def cmd_helm_docs():
    problems = Problems()
    with open(os.path.join(ROOT, CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    with open(os.path.join(ROOT, "docs/deployment.md")) as f:
        names = documented_values(f.read())
    if not names:
        problems.add("docs/deployment.md", "no table under \"### The chart's values\"")
    for path in value_paths(values):
        covered = path in names or any(n.endswith(".*") and path.startswith(n[:-1]) for n in names)
        if not covered:
            problems.add("docs/deployment.md", f"the chart's value {path} is not in the table of the chart's values")
    problems.exit()


# The chart's names of the components against the base's.
COMPONENTS = {
    "collector": "observatory-collector",
    "consumer-timescale": "observatory-consumer-timescale",
    "consumer-tempo": "observatory-consumer-tempo",
    "compactor": "observatory-compactor",
    "api": "observatory-api",
    "migrate": "observatory-migrate",
}
# Variables the chart gives that the base does not, and why.
CHART_ONLY_ENV = {
    "DB_PASSWORD",  # the password apart from DATABASE_URL (the base has it in the URL)
    "REDIS_PASSWORD",  # likewise for REDIS_URL
    "KAFKA_PRODUCER_CONFIG",  # the API's score producer, for TLS/SASL brokers
}


def container_facts(o, configmaps, external):
    """What must agree between two renderings of one workload."""
    spec, labels = pod_spec(o)
    c = spec["containers"][0]
    env = {e["name"] for e in c.get("env", [])}
    for ef in c.get("envFrom", []):
        if "configMapRef" in ef:
            env |= set(configmaps.get(ef["configMapRef"]["name"], {}))
        if "secretRef" in ef and ef["secretRef"]["name"] not in external:
            env |= external.get(ef["secretRef"]["name"], set())
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}

    def probe(p):
        if not p:
            return None
        get = dict(p["httpGet"])
        get["port"] = ports.get(get["port"], get["port"])
        return {**p, "httpGet": get}

    return {
        "kind": o["kind"],
        "image": image_of(c),
        "args": c.get("args"),
        "ports": ports,
        "probes": {k: probe(c.get(k)) for k in ("startupProbe", "livenessProbe", "readinessProbe")},
        "pod securityContext": spec.get("securityContext"),
        "container securityContext": c.get("securityContext"),
        "resources": c.get("resources"),
        "terminationGracePeriodSeconds": spec.get("terminationGracePeriodSeconds"),
        "preStop": c.get("lifecycle", {}).get("preStop"),
        "client labels": sorted(k for k, v in labels.items() if k.startswith("llm-observatory.io/")),
        "env": env,
    }


def cmd_helm_agree():
    problems = Problems()
    base = kustomize(os.path.join(ROOT, "k8s/base"))
    # Every optional secret given, as the base names them all.
    values = set_values(
        [
            "database.host=db,database.password=p,redis.host=redis,redis.password=p",
            "kafka.sasl.enabled=true,kafka.sasl.username=u,kafka.sasl.password=p",
            "collector.apiKeys.value=k=default,objectStore.existingSecret=store",
        ],
        [],
    )
    chart, _ = helm_render(values)
    sides = {}
    for name, objects in (("k8s/base", base), (CHART, chart)):
        configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
        external = {"observatory-object-store": set(), "store": set()}
        workloads = {}
        for o in objects:
            if pod_spec(o)[0] is None:
                continue
            n = o["metadata"]["name"]
            component = next((k for k, v in COMPONENTS.items() if n == v or n == f"{RELEASE}-{k}"), None)
            if component is None:
                problems.add(name, f"{obj_name(o)} is no component the other side knows")
                continue
            workloads[component] = container_facts(o, configmaps, external)
        sides[name] = workloads
    b, c = sides["k8s/base"], sides[CHART]
    for component in COMPONENTS:
        if component not in b or component not in c:
            problems.add(component, f"in {'the base' if component in b else 'the chart'} only")
            continue
        for fact, want in b[component].items():
            got = c[component][fact]
            if fact == "env":
                missing, extra = want - got, got - want - CHART_ONLY_ENV
                if missing:
                    problems.add(f"{CHART} {component}", f"lacks the base's variables {sorted(missing)}")
                if extra:
                    problems.add(f"{CHART} {component}", f"gives variables the base does not: {sorted(extra)}")
            elif got != want:
                problems.add(f"{CHART} {component}", f"{fact}: chart {got!r}, base {want!r}")
    # The autoscalers of the collector and the API, and the disruption budgets.
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        bs = {o["metadata"]["name"].removeprefix("observatory-"): o["spec"] for o in base if o["kind"] == kind}
        cs = {o["metadata"]["name"].removeprefix(f"{RELEASE}-"): o["spec"] for o in chart if o["kind"] == kind}
        for n, spec in bs.items():
            got = cs.get(n)
            if got is None:
                problems.add(CHART, f"no {kind} for {n}")
                continue
            for k in ("minReplicas", "maxReplicas", "metrics", "behavior", "maxUnavailable"):
                if spec.get(k) != got.get(k):
                    problems.add(f"{CHART} {kind} {n}", f"{k}: chart {got.get(k)!r}, base {spec.get(k)!r}")
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
        out.update(container_envs(overlay, kustomize(os.path.join(ROOT, overlay)), secrets))
    # The chart, as the guide installs it and with every part switched on.
    for label, values in (
        ("guide", set_values(["database.host=db,redis.host=redis"], [])),
        ("everything", set_values([], [HELM_EVERYTHING])),
    ):
        objects, _ = helm_render(values)
        chart_secrets = {o["metadata"]["name"]: set(o.get("data") or {}) for o in objects if o["kind"] == "Secret"}
        out.update(container_envs(f"{CHART} ({label})", objects, chart_secrets))
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


def container_envs(where, objects, secrets):
    """{"<where> <object> container <name>": {"binary", "command", "env"}} of
    the rendered `objects`: each container's variables, its config maps'
    and secrets' (`secrets`: name -> keys) included."""
    out = {}
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    for o, c in containers(objects):
        names = {e["name"] for e in c.get("env", [])}
        for ef in c.get("envFrom", []):
            if "configMapRef" in ef:
                names |= set(configmaps.get(ef["configMapRef"]["name"], {}))
            if "secretRef" in ef:
                names |= secrets.get(ef["secretRef"]["name"], set())
        args = c.get("args") or c.get("command") or []
        out[f"{where} {obj_name(o)} container {c['name']}"] = {
            "binary": image_of(c),
            "command": args[0] if args else None,
            "env": sorted(names),
        }
    return out


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
    h = sub.add_parser("helm")
    h.add_argument("--set", action="append", default=[], dest="pairs")
    h.add_argument("-f", action="append", default=[], dest="files")
    h.add_argument("--api-versions", default="")
    h.add_argument("--expect-fail")
    h.add_argument("--expect-kind", action="append", default=[], dest="kinds", help="at least one object of this kind renders")
    lint = sub.add_parser("helm-lint")
    lint.add_argument("--set", action="append", default=[], dest="pairs")
    lint.add_argument("-f", action="append", default=[], dest="files")
    sub.add_parser("helm-agree")
    sub.add_parser("helm-docs")
    args = parser.parse_args()
    if args.cmd == "k8s":
        cmd_k8s(args.dirs, args.partial)
    elif args.cmd == "k8s-files":
        cmd_k8s_files(args.files)
    elif args.cmd == "compose":
        cmd_compose(args.file)
    elif args.cmd == "ecs":
        cmd_ecs(args.file)
    elif args.cmd == "helm":
        cmd_helm(args.pairs, args.files, [v for v in args.api_versions.split(",") if v], args.expect_fail, args.kinds)
    elif args.cmd == "helm-lint":
        cmd_helm_lint(args.pairs, args.files)
    elif args.cmd == "helm-agree":
        cmd_helm_agree()
    elif args.cmd == "helm-docs":
        cmd_helm_docs()
    else:
        cmd_envs()


if __name__ == "__main__":
    main()
