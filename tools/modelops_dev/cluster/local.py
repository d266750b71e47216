"""`modelops cluster up|down|status`: etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
local processes on loopback, on free ports, with real TLS, RBAC and service-account tokens.

The same class is the pytest fixture of the `cluster` tier (tests/fixtures/cluster.py), so what the tests
exercise is exactly what `modelops cluster up` runs. Each process is started in its own session and
recorded with its pid *and* kernel start time, so `down` never signals a recycled pid.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelops_dev.cluster import versions
from modelops_dev.cluster.pki import CertPair, Pki
from modelops_dev.cluster.process import (
    SYSTEM_CPU_SHARES,
    ClusterError,
    ProcessRecord,
    Progress,
    enter_cgroup,
    free_port,
    proc_start_time,
    remove_cgroup,
    system_cgroup,
    system_cgroup_path,
    terminate,
    wait_until,
)

#: Components in start order; `down` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: Service IP range the API server allocates from (bookkeeping only: nothing routes to it on this host).
SERVICE_CIDR = "10.96.0.0/16"


def default_home() -> Path:
    return Path(os.environ.get("MODELOPS_HOME", Path.home() / ".local" / "share" / "modelops"))


@dataclass
class ClusterState:
    components: dict[str, ProcessRecord] = field(default_factory=dict)
    server: str = ""
    #: The node's address when the cluster runs with a node (`up(node=True)`), else "".
    node_ip: str = ""

    @classmethod
    def load(cls, path: Path) -> ClusterState:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls({k: ProcessRecord(**v) for k, v in raw["components"].items()}, raw.get("server", ""),
                   raw.get("node_ip", ""))

    def save(self, path: Path) -> None:
        data = {"components": {k: vars(v) for k, v in self.components.items()}, "server": self.server,
                "node_ip": self.node_ip}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)


def _kubeconfig(server: str, ca: Path, client: CertPair, user: str) -> dict[str, Any]:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "modelops-local",
        "clusters": [{"name": "modelops-local",
                      "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(client.cert),
                                          "client-key-data": b64(client.key)}}],
        "contexts": [{"name": "modelops-local", "context": {"cluster": "modelops-local", "user": user}}],
    }


def endpoint_ports(endpoints: dict[str, Any]) -> list[tuple[str, int]]:
    """(address, port) pairs of an Endpoints object."""
    return [(a.get("ip", ""), int(p.get("port", 0))) for sub in endpoints.get("subsets") or []
            for a in sub.get("addresses") or [] for p in sub.get("ports") or []]


def stale_kubernetes_endpoints(endpoints: dict[str, Any], ip: str, port: int) -> bool:
    """Whether the `kubernetes` Service's Endpoints name anything but this API server's ip:port."""
    return endpoint_ports(endpoints) != [(ip, port)]


class LocalCluster:
    """One named local control plane under `$MODELOPS_HOME/clusters/<name>` (or an explicit root)."""

    def __init__(self, name: str = "default", root: Path | None = None, bin_dir: Path | None = None) -> None:
        self.name = name
        self._cgroup: Path | None = None
        self.root = root or default_home() / "clusters" / name
        self.bin_dir = bin_dir or versions.bin_dir()
        self.state_file = self.root / "state.json"
        self.kubeconfig = self.root / "kubeconfig"
        self.logs = self.root / "logs"

    # ----------------------------------------------------------------------------------------- queries
    def state(self) -> ClusterState:
        return ClusterState.load(self.state_file)

    def status(self) -> dict[str, Any]:
        st = self.state()
        comps = {n: {"pid": r.pid, "port": r.port, "running": r.alive(), "log": r.log}
                 for n, r in st.components.items()}
        running = bool(comps) and all(c["running"] for c in comps.values())
        return {"name": self.name, "running": running, "server": st.server, "node_ip": st.node_ip or None,
                "kubeconfig": str(self.kubeconfig) if self.kubeconfig.exists() else None,
                "components": comps}

    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise ClusterError(f"{path} is missing; build the Kubernetes binaries with: modelops cluster build")
        return str(path)

    # ------------------------------------------------------------------------------------------ up
    def up(self, progress: Progress = print, timeout: float = 180.0, node: bool = False) -> dict[str, Any]:
        """Start the control plane; with `node=True` also a real node (see modelops_dev.cluster.node)."""
        st = self.state()
        if st.components and all(r.alive() for r in st.components.values()):
            if node and not st.node_ip:
                raise ClusterError(f"cluster {self.name!r} runs without a node; stop it first "
                                   f"(modelops cluster down --name {self.name}) and start it with --node")
            progress(f"cluster {self.name!r} is already running at {st.server}")
            return self.status()
        if st.components:
            progress("some components of a previous run are gone; restarting the whole control plane")
            self.down(progress=progress)
        for b in ("etcd", *COMPONENTS[1:]):
            self.binary(b)
        self.logs.mkdir(parents=True, exist_ok=True)
        the_node = None
        ip = ""
        if node:
            from modelops_dev.cluster.node import Node, node_ip

            for b in ("kubelet", "kube-proxy"):
                self.binary(b)
            # One node per host: the bridge, port 53 on the host address and kube-proxy's rules are shared.
            for other in sorted((self.root.parent).glob("*/state.json")):
                ost = ClusterState.load(other)
                if other.parent != self.root and ost.node_ip and any(r.alive() for r in ost.components.values()):
                    raise ClusterError(f"cluster {other.parent.name!r} already runs a node on this host; stop it "
                                       f"first: modelops cluster down --name {other.parent.name}")
            the_node = Node(self.root, self.bin_dir)
            the_node.prepare(progress)
            ip = node_ip()
            self._cgroup = system_cgroup(self.name)
            progress(f"  node processes in cgroup {self._cgroup} (cpu {SYSTEM_CPU_SHARES} shares, as a node's "
                     "system.slice; the kubelet gives Pods `kubepods`)" if self._cgroup else
                     "  no writable cpu cgroup here: the node's processes compete with Pods one by one")
        pki = Pki(self.root / "pki")
        sa = pki.service_account_keys()
        apiserver_cert = pki.issue("apiserver" + ("-" + ip if ip else ""), "kube-apiserver", server=True,
                                   hosts=("127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
                                          "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                                          "10.96.0.1", *((ip,) if ip else ())))
        admin = pki.issue("admin", "modelops-admin", orgs=("system:masters",))
        kcm_client = pki.issue("kube-controller-manager", "system:kube-controller-manager")
        sched_client = pki.issue("kube-scheduler", "system:kube-scheduler")
        # Client of the API server toward kubelets (logs/exec) once a node joins (`--node`).
        pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", orgs=("kubeadm:cluster-admins",))

        ports = {c: free_port() for c in COMPONENTS}
        etcd_peer = free_port()
        server = f"https://127.0.0.1:{ports['kube-apiserver']}"
        st = ClusterState(server=server, node_ip=ip)

        def write_kubeconfig(path: Path, client: CertPair, user: str) -> Path:
            path.write_text(yaml.safe_dump(_kubeconfig(server, pki.ca.cert, client, user)))
            path.chmod(0o600)
            return path

        write_kubeconfig(self.kubeconfig, admin, "modelops-admin")
        kcm_kc = write_kubeconfig(self.root / "kube-controller-manager.kubeconfig", kcm_client,
                                  "system:kube-controller-manager")
        sched_kc = write_kubeconfig(self.root / "kube-scheduler.kubeconfig", sched_client,
                                    "system:kube-scheduler")
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        commands: dict[str, list[str]] = {
            "etcd": [
                self.binary("etcd"), "--name", "modelops", "--data-dir", str(self.root / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"modelops={peer_url}", "--unsafe-no-fsync",
                "--log-level", "warn",
            ],
            "kube-apiserver": [
                self.binary("kube-apiserver"),
                "--etcd-servers", etcd_url,
                "--secure-port", str(ports["kube-apiserver"]),
                "--tls-cert-file", str(apiserver_cert.cert), "--tls-private-key-file", str(apiserver_cert.key),
                "--client-ca-file", str(pki.ca.cert),
                "--authorization-mode", "Node,RBAC",
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(sa.cert),
                "--service-account-signing-key-file", str(sa.key),
                "--kubelet-client-certificate", str(pki.root / "apiserver-kubelet-client.crt"),
                "--kubelet-client-key", str(pki.root / "apiserver-kubelet-client.key"),
                "--allow-privileged=true",
                *(
                    # With a node, Pods reach the API server through the `kubernetes` Service, whose
                    # endpoint is the node's address; the kubelet is dialled at its InternalIP.
                    ["--bind-address", "0.0.0.0", "--advertise-address", ip, "--endpoint-reconciler-type", "lease",
                     "--kubelet-preferred-address-types", "InternalIP,Hostname"]
                    if ip else
                    # Loopback cannot be the `kubernetes` Service endpoint; nothing in-cluster dials it here.
                    ["--bind-address", "127.0.0.1", "--endpoint-reconciler-type", "none"]
                ),
                "--cert-dir", str(self.root / "apiserver-certs"),
                "--profiling=false",
            ],
            "kube-controller-manager": [
                self.binary("kube-controller-manager"),
                "--kubeconfig", str(kcm_kc),
                "--authentication-kubeconfig", str(kcm_kc), "--authorization-kubeconfig", str(kcm_kc),
                "--bind-address", "127.0.0.1", "--secure-port", str(ports["kube-controller-manager"]),
                "--leader-elect=false", "--controllers", "*",
                "--use-service-account-credentials",
                "--service-account-private-key-file", str(sa.key),
                "--root-ca-file", str(pki.ca.cert),
                "--cluster-signing-cert-file", str(pki.ca.cert), "--cluster-signing-key-file", str(pki.ca.key),
                "--service-cluster-ip-range", SERVICE_CIDR,
                "--profiling=false",
            ],
            "kube-scheduler": [
                self.binary("kube-scheduler"),
                "--kubeconfig", str(sched_kc),
                "--authentication-kubeconfig", str(sched_kc), "--authorization-kubeconfig", str(sched_kc),
                "--bind-address", "127.0.0.1", "--secure-port", str(ports["kube-scheduler"]),
                "--leader-elect=false", "--profiling=false",
            ],
        }
        ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
        ctx.load_cert_chain(str(admin.cert), str(admin.key))
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # kcm/scheduler serve self-signed certs; only /healthz is read
        insecure.load_cert_chain(str(admin.cert), str(admin.key))
        health: dict[str, tuple[str, ssl.SSLContext | None]] = {
            "etcd": (f"{etcd_url}/health", None),
            "kube-apiserver": (f"{server}/readyz", ctx),
            "kube-controller-manager": (f"https://127.0.0.1:{ports['kube-controller-manager']}/healthz", insecure),
            "kube-scheduler": (f"https://127.0.0.1:{ports['kube-scheduler']}/healthz", insecure),
        }
        try:
            for comp in COMPONENTS:
                t0 = time.monotonic()
                log = self.logs / f"{comp}.log"
                proc = self._spawn(commands[comp], log, self._cgroup)
                st.components[comp] = ProcessRecord(proc.pid, proc_start_time(proc.pid) or 0, ports[comp],
                                                    str(log))
                st.save(self.state_file)
                url, sslctx = health[comp]
                self._wait_healthy(comp, url, sslctx, proc, log, timeout)
                progress(f"  {comp:<24} ready on 127.0.0.1:{ports[comp]} ({time.monotonic() - t0:.1f}s)")
            if the_node is not None:
                self._start_node(the_node, st, pki, server, ip, write_kubeconfig, progress, timeout)
        except BaseException:
            self.down(progress=lambda _m: None)
            raise
        return self.status()

    def kubectl(self, *args: str, input: str | None = None) -> str:
        proc = subprocess.run([self.binary("kubectl"), "--kubeconfig", str(self.kubeconfig), *args], input=input,
                              text=True, capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def _start_node(self, the_node: Any, st: ClusterState, pki: Pki, server: str, ip: str,
                    write_kubeconfig: Callable[[Path, CertPair, str], Path], progress: Progress,
                    timeout: float) -> None:
        from modelops_dev.cluster.node import NODE_COMPONENTS

        self._repair_kubernetes_endpoints(ip, int(server.rsplit(":", 1)[1]), progress, timeout)
        ports = {"kubelet": free_port(ip), "kubelet-healthz": free_port(), "kube-proxy": free_port(),
                 "kube-proxy-metrics": free_port(), "coredns": 53, "coredns-ready": free_port(), "containerd": 0}
        commands = the_node.commands(pki=pki, server=server, ip=ip, ports=ports, kubeconfig=write_kubeconfig)
        probes = the_node.probes(ip, ports, self.kubectl)
        for comp in NODE_COMPONENTS:
            t0 = time.monotonic()
            log = self.logs / f"{comp}.log"
            proc = self._spawn(commands[comp], log, self._cgroup)
            st.components[comp] = ProcessRecord(proc.pid, proc_start_time(proc.pid) or 0, ports[comp], str(log))
            st.save(self.state_file)
            wait_until(comp, probes[comp], proc, log, timeout)
            the_node.after_start(comp, progress, self.kubectl)
            where = (str(the_node.socket) if comp == "containerd" else
                     f"{ip}:{ports[comp]}" if comp in ("kubelet", "coredns") else f"127.0.0.1:{ports[comp]}")
            progress(f"  {comp:<24} ready on {where} ({time.monotonic() - t0:.1f}s)")
        progress(f"  node {the_node.name!r} Ready at {ip}")

    def _repair_kubernetes_endpoints(self, ip: str, port: int, progress: Progress, timeout: float) -> None:
        """Pods reach the API server through the `kubernetes` Service. Its Endpoints are written by the API
        server's lease reconciler, which corrects the addresses but, after its first write, not the port
        (kube-apiserver reconciles ports only when it creates the object). A control plane restarted on data
        of an earlier run listens on a newly picked port, so in-cluster clients (KServe's manager, the
        Prometheus Operator) would dial the old one and crash-loop with "connection refused". A stale object is
        deleted; the reconciler writes it afresh, with this port, within its interval (10 s)."""
        def current() -> dict[str, Any] | None:
            out = subprocess.run([self.binary("kubectl"), "--kubeconfig", str(self.kubeconfig), "get", "endpoints",
                                  "kubernetes", "-n", "default", "-o", "json"], text=True, capture_output=True,
                                 timeout=60)
            return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None

        got = current()
        if got is None or not stale_kubernetes_endpoints(got, ip, port):
            return
        progress(f"  the `kubernetes` Service still points at an earlier API server port "
                 f"({endpoint_ports(got)}): recreating its Endpoints for {ip}:{port}")
        subprocess.run([self.binary("kubectl"), "--kubeconfig", str(self.kubeconfig), "delete", "endpoints",
                        "kubernetes", "-n", "default", "--ignore-not-found"], capture_output=True, timeout=60,
                       check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = current()
            if got is not None and not stale_kubernetes_endpoints(got, ip, port):
                return
            time.sleep(1)
        raise ClusterError(f"the API server did not recreate the `kubernetes` Endpoints for {ip}:{port} "
                           f"within {timeout:.0f}s (last: {got})")

    def node(self) -> Any:
        """The running node, or a ClusterError naming the command that starts one."""
        st = self.state()
        if not st.node_ip or not all(r.alive() for r in st.components.values()):
            raise ClusterError(f"cluster {self.name!r} has no running node; start one with: "
                               f"modelops cluster up --node --name {self.name}")
        from modelops_dev.cluster.node import Node

        return Node(self.root, self.bin_dir)

    @staticmethod
    def _spawn(cmd: list[str], log: Path, cgroup: Path | None = None) -> subprocess.Popen[bytes]:
        with log.open("ab") as fh:
            return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True, preexec_fn=enter_cgroup(cgroup))

    @staticmethod
    def _wait_healthy(comp: str, url: str, ctx: ssl.SSLContext | None, proc: subprocess.Popen[bytes],
                      log: Path, timeout: float) -> None:
        def healthy() -> bool:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return bool(r.status == 200)

        wait_until(f"{comp} at {url}", healthy, proc, log, timeout, interval=0.25,
                   retry_on=(urllib.error.URLError, OSError, ssl.SSLError))

    # ----------------------------------------------------------------------------------------- down
    def down(self, progress: Progress = print, purge: bool = False, grace: float = 15.0) -> None:
        st = self.state()
        the_node = None
        if st.node_ip:
            from modelops_dev.cluster.node import Node

            the_node = Node(self.root, self.bin_dir)
            api = st.components.get("kube-apiserver")
            kubelet = st.components.get("kubelet")
            if api and api.alive() and kubelet and kubelet.alive():
                # No new Pods get a node while the kubelet tears the running ones down properly.
                sched = st.components.get("kube-scheduler")
                if sched and sched.alive():
                    terminate(sched, grace)
                the_node.drain(self.kubectl, progress)
        for comp in reversed(st.components):
            rec = st.components[comp]
            if not rec.alive():
                continue
            if comp == "containerd" and the_node is not None:
                the_node.kill_containers()
            terminate(rec, grace)
            progress(f"  {comp:<24} stopped")
        if the_node is not None:
            the_node.cleanup_host(progress)
            remove_cgroup(system_cgroup_path(self.name))
        if self.state_file.exists():
            self.state_file.unlink()
        if purge and self.root.exists():
            shutil.rmtree(self.root)
            progress(f"  removed {self.root}")
