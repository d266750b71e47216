"""`modelops cluster up --node`: a real node next to the local control plane, as host processes.

Why host processes and not kind (tried on this machine with kind v0.33.0, `go install`ed): kind always
starts its node containers with `docker run --privileged`, and here runc refuses that with "unable to
apply caps: operation not permitted" -- the sandbox's capability bounding set lacks CAP_SYS_RESOURCE
(CapBnd 0x1fffeffffff), which `--privileged` asks for. `kind create cluster --image <a systemd image
made with debootstrap>` fails at exactly that step, before any node image question arises (kind's node
image would also need a kindest/base with containerd 2.x, kubeadm and every control-plane component as a
container image, all normally pulled). The same missing capability is why containerd below runs with
`restrict_oom_score_adj` (no negative OOM scores). The node below is what
Kubernetes' own `hack/local-up-cluster.sh` runs, from the same binaries the control plane uses:

- containerd (Debian's package) with its CRI plugin, on a socket and root of its own (never the Docker
  daemon's), `restrict_oom_score_adj` because this host refuses negative OOM scores, cgroupfs driver;
- the pause image compiled from Kubernetes' own `build/pause/linux/pause.c` (gcc -static);
- CNI: Debian's containernetworking-plugins, bridge + host-local + portmap + firewall (containerd adds loopback);
- kubelet with a CA-signed serving certificate and a `system:node:<name>` client certificate (the Node
  authorizer is real), webhook authentication/authorization;
- kube-proxy (iptables mode) as `system:kube-proxy`, so ClusterIP and NodePort Services work;
- CoreDNS (built from its Go module) as a host process on the node IP with its own RBAC identity; the
  kubelet hands that address to Pods as their DNS server, so `svc.ns.svc.cluster.local` resolves.

The API server advertises the node's non-loopback address (`kubernetes` Service endpoint), so Pods
with service-account tokens (the operator, Jobs) reach it through the Service IP.
Images enter containerd's `k8s.io` namespace from the local Docker daemon (`load_images`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from modelops_dev.cluster import versions
from modelops_dev.cluster.process import ClusterError, Progress
from modelops_dev.host import ensure_daemon, repo_root

#: Node components in start order (after the control plane); stopped in reverse.
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")
POD_CIDR = "10.244.0.0/24"
BRIDGE = "modelops0"
PAUSE_IMAGE = f"registry.k8s.io/pause:{versions.PAUSE_VERSION}"
#: Debian packages the node runs (installed on demand, like `modelops images` installs docker.io).
HOST_PACKAGES = {"containerd": "containerd", "runc": "runc", "iptables": "iptables", "conntrack": "conntrack",
                 "dockerd": "docker.io", "/usr/lib/cni/bridge": "containernetworking-plugins"}
CNI_BIN_DIR = "/usr/lib/cni"


class NodeError(ClusterError):
    pass


# ------------------------------------------------------------------------------------------- helpers
def node_ip() -> str:
    """The host's address on its default route: what Pods and the `kubernetes` Service endpoint use."""
    out = subprocess.run(["ip", "-4", "-j", "route", "get", "192.0.2.255"], capture_output=True, text=True)
    with contextlib.suppress(ValueError, KeyError, IndexError):
        ip = str(json.loads(out.stdout)[0]["prefsrc"])
        if not ip.startswith("127."):
            return ip
    for _name, addrs in _addresses().items():
        for a in addrs:
            if not a.startswith("127."):
                return a
    raise NodeError("no non-loopback IPv4 address on this host: a node needs one for Pods to reach the API server")


def _addresses() -> dict[str, list[str]]:
    out = subprocess.run(["ip", "-4", "-j", "addr"], capture_output=True, text=True)
    result: dict[str, list[str]] = {}
    with contextlib.suppress(ValueError):
        for link in json.loads(out.stdout or "[]"):
            if link.get("ifname") in ("lo", "docker0", BRIDGE):
                continue
            result[link["ifname"]] = [a["local"] for a in link.get("addr_info", [])]
    return result


def normalize_ref(ref: str) -> str:
    """An image reference as containerd stores it: docker.io/library/x:t, docker.io/org/x:t, host/x:t."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


def node_name() -> str:
    return socket.gethostname().split(".")[0].lower()


def ensure_host_packages(progress: Progress) -> None:
    missing = sorted({pkg for probe, pkg in HOST_PACKAGES.items()
                      if not (Path(probe).exists() if probe.startswith("/") else shutil.which(probe))})
    if not missing:
        return
    if os.geteuid() != 0:
        raise NodeError(f"a node needs root and these Debian packages: {' '.join(missing)}")
    progress(f"installing Debian packages for the node: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def node_bin_dir() -> Path:
    return versions.cache_root() / "node" / f"coredns-{versions.COREDNS_VERSION}" / "bin"


def ensure_node_binaries(progress: Progress) -> Path:
    """CoreDNS from its Go module and the static pause binary from Kubernetes' module (cached by version)."""
    out = node_bin_dir()
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "coredns").exists():
        progress(f"building CoreDNS {versions.COREDNS_VERSION} from the Go module proxy (cold: a few minutes)")
        t0 = time.monotonic()
        env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(out), "GOFLAGS": "-mod=mod"}
        proc = subprocess.run(["go", "install", "-trimpath", "-ldflags=-s -w",
                               f"github.com/coredns/coredns@{versions.COREDNS_VERSION}"],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NodeError(f"building CoreDNS failed:\n{proc.stderr[-3000:]}")
        progress(f"  coredns built in {time.monotonic() - t0:.0f}s")
    if not (out / "pause").exists():
        gomod = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
        src = Path(gomod) / f"k8s.io/kubernetes@{versions.K8S_VERSION}" / "build/pause/linux/pause.c"
        if not src.exists():
            raise NodeError(f"{src} is missing; build the Kubernetes binaries first: modelops cluster build")
        subprocess.run(["gcc", "-Os", "-static", "-Wall", "-Werror",
                        f"-DVERSION={versions.PAUSE_VERSION}-modelops", "-o", str(out / "pause"), str(src)],
                       check=True)
        subprocess.run(["strip", str(out / "pause")], check=False)
        progress("  pause built from Kubernetes' build/pause/linux/pause.c")
    return out


def _docker_image_id(ref: str) -> str | None:
    proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_pause_image(bin_dir: Path, progress: Progress) -> None:
    if _docker_image_id(PAUSE_IMAGE):
        return
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "pause.tar"
        with tarfile.open(tar, "w") as tf:
            tf.add(bin_dir / "pause", arcname="pause")
        subprocess.run(["docker", "import", "--change", 'ENTRYPOINT ["/pause"]', "--change", "USER 65535:65535",
                        str(tar), PAUSE_IMAGE], check=True, capture_output=True)
    progress(f"  image {PAUSE_IMAGE} made from the static pause binary")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _dns_answers(ip: str, port: int, name: str = "kubernetes.default.svc.cluster.local") -> bool:
    """One A query over UDP: a reply with at least one answer record."""
    import struct

    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", 0x4D4F, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(query, (ip, port))
        reply = s.recv(512)
    return len(reply) > 12 and struct.unpack(">H", reply[6:8])[0] > 0


# ----------------------------------------------------------------------------------------- the node
NODE_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "modelops:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "modelops:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "modelops:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
---
# The API server's client identity toward kubelets (logs, exec, port-forward), as kubeadm binds it.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "modelops:kube-apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "kube-apiserver-kubelet-client"}
"""


class Node:
    """The node half of a LocalCluster started with `node=True` (see LocalCluster.up)."""

    def __init__(self, cluster_root: Path, bin_dir: Path) -> None:
        self.root = cluster_root / "node"
        self.bin_dir = bin_dir
        self.socket = self.root / "containerd" / "containerd.sock"
        self.name = node_name()

    # -------------------------------------------------------------------------------- configuration
    def _containerd_config(self) -> Path:
        cfg = self.root / "containerd.toml"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        cfg.write_text(f"""version = 2
root = "{self.root / 'containerd' / 'root'}"
state = "{self.root / 'containerd' / 'state'}"
[grpc]
  address = "{self.socket}"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # This host refuses negative oom_score_adj (no CAP_SYS_RESOURCE); clamp to containerd's own score.
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.root / 'cni'}"
""")
        cni = self.root / "cni"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-modelops.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "modelops",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.root / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
                # Docker sets the FORWARD policy to DROP; this plugin admits the Pods' traffic.
                {"type": "firewall"},
            ]}, indent=1))
        return cfg

    def commands(self, *, pki: Any, server: str, ip: str, ports: dict[str, int],
                 kubeconfig: Callable[[Path, Any, str], Path]) -> dict[str, list[str]]:
        self.root.mkdir(parents=True, exist_ok=True)
        node_bins = node_bin_dir()
        kubelet_client = pki.issue(f"kubelet-client-{self.name}", f"system:node:{self.name}", orgs=("system:nodes",))
        kubelet_serving = pki.issue(f"kubelet-serving-{self.name}", f"system:node:{self.name}", server=True,
                                    hosts=(ip, self.name, "127.0.0.1", "localhost"))
        proxy_client = pki.issue("kube-proxy", "system:kube-proxy")
        dns_client = pki.issue("coredns", "system:coredns")
        kubelet_kc = kubeconfig(self.root / "kubelet.kubeconfig", kubelet_client, f"system:node:{self.name}")
        proxy_kc = kubeconfig(self.root / "kube-proxy.kubeconfig", proxy_client, "system:kube-proxy")
        dns_kc = kubeconfig(self.root / "coredns.kubeconfig", dns_client, "system:coredns")
        kubelet_cfg = self.root / "kubelet.yaml"
        kubelet_cfg.write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"x509": {"clientCAFile": str(pki.ca.cert)}, "webhook": {"enabled": True},
                               "anonymous": {"enabled": False}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(kubelet_serving.cert), "tlsPrivateKeyFile": str(kubelet_serving.key),
            # cgroup v1 host: containerd 1.6 has no RuntimeConfig RPC, so the kubelet uses this driver
            # (a fallback Kubernetes keeps until 1.38).
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "clusterDomain": "cluster.local", "clusterDNS": [ip], "resolvConf": "/etc/resolv.conf",
            "address": ip, "port": ports["kubelet"],
            "healthzBindAddress": "127.0.0.1", "healthzPort": ports["kubelet-healthz"],
            "readOnlyPort": 0, "serializeImagePulls": False,
            # One shared disk: don't evict or garbage-collect images because the host's disk is busy.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "maxPods": 110, "staticPodPath": "", "registerNode": True, "localStorageCapacityIsolation": False,
        }))
        corefile = self.root / "Corefile"
        corefile.write_text(f"""cluster.local:{ports['coredns']} in-addr.arpa:{ports['coredns']} ip6.arpa:{ports['coredns']} {{
    bind {ip}
    errors
    ready 127.0.0.1:{ports['coredns-ready']}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {dns_kc} modelops-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
.:{ports['coredns']} {{
    bind {ip}
    errors
    forward . /etc/resolv.conf
    cache 30
}}
""")
        return {
            "containerd": ["containerd", "--config", str(self._containerd_config())],
            "kubelet": [str(self.bin_dir / "kubelet"), "--config", str(kubelet_cfg), "--kubeconfig", str(kubelet_kc),
                        "--root-dir", str(self.root / "kubelet"), "--hostname-override", self.name,
                        "--node-ip", ip, "--v=1"],
            "kube-proxy": [str(self.bin_dir / "kube-proxy"), "--kubeconfig", str(proxy_kc),
                           "--hostname-override", self.name, "--cluster-cidr", POD_CIDR, "--proxy-mode", "iptables",
                           "--conntrack-max-per-core", "0",
                           "--healthz-bind-address", f"127.0.0.1:{ports['kube-proxy']}",
                           "--metrics-bind-address", f"127.0.0.1:{ports['kube-proxy-metrics']}"],
            "coredns": [str(node_bins / "coredns"), "-conf", str(corefile)],
        }

    # ---------------------------------------------------------------------------------------- start
    def prepare(self, progress: Progress) -> None:
        """Everything the node needs before the control plane starts: packages, binaries, pause image."""
        if os.geteuid() != 0:
            raise NodeError("a node (kubelet, containerd, iptables) needs root")
        ensure_host_packages(progress)
        bins = ensure_node_binaries(progress)
        ensure_daemon(repo_root())
        ensure_pause_image(bins, progress)
        for key, value in (("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1")):
            path = Path("/proc/sys") / key.replace(".", "/")
            if path.exists():
                with contextlib.suppress(OSError):
                    path.write_text(value)

    def probes(self, ip: str, ports: dict[str, int], kubectl: Callable[..., str]) -> dict[str, Callable[[], bool]]:
        def containerd_ok() -> bool:
            return subprocess.run(["ctr", "--address", str(self.socket), "version"],
                                  capture_output=True).returncode == 0

        def node_ready() -> bool:
            if not _http_ok(f"http://127.0.0.1:{ports['kubelet-healthz']}/healthz"):
                return False
            node = json.loads(kubectl("get", "node", self.name, "-o", "json"))
            return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])

        return {
            "containerd": containerd_ok,
            "kubelet": node_ready,
            "kube-proxy": lambda: _http_ok(f"http://127.0.0.1:{ports['kube-proxy']}/healthz"),
            "coredns": lambda: _http_ok(f"http://127.0.0.1:{ports['coredns-ready']}/ready")
            and _dns_answers(ip, ports["coredns"]),
        }

    def after_start(self, component: str, progress: Progress, kubectl: Callable[..., str]) -> None:
        if component == "containerd":
            kubectl("apply", "-f", "-", input=NODE_RBAC)
            self.load_images([PAUSE_IMAGE], progress)

    # ----------------------------------------------------------------------------------------- images
    def _loaded(self) -> dict[str, str]:
        path = self.root / "images.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def load_images(self, refs: Sequence[str], progress: Progress) -> dict[str, str]:
        """Copy images from the local Docker daemon into containerd's k8s.io namespace (skip unchanged ones)."""
        loaded = self._loaded()
        for ref in refs:
            image_id = _docker_image_id(ref)
            if image_id is None:
                raise NodeError(f"image {ref} is not in the local Docker daemon; build it first (make images)")
            if loaded.get(ref) == image_id and self._in_containerd(ref):
                continue
            t0 = time.monotonic()
            save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
            imp = subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "import",
                                  "--no-unpack", "-"], stdin=save.stdout, capture_output=True, text=True)
            save.wait()
            if save.returncode != 0 or imp.returncode != 0:
                raise NodeError(f"loading {ref} into the node failed: {imp.stderr[-2000:]}")
            loaded[ref] = image_id
            (self.root / "images.json").write_text(json.dumps(loaded, indent=1))
            progress(f"  loaded {ref} into the node ({time.monotonic() - t0:.0f}s)")
        return loaded

    def _in_containerd(self, ref: str) -> bool:
        name = normalize_ref(ref)
        out = subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "ls", "-q"],
                             capture_output=True, text=True)
        return name in out.stdout.split()

    # ------------------------------------------------------------------------------------------- stop
    def drain(self, kubectl: Callable[..., str], progress: Progress, timeout: float = 60.0) -> None:
        """Delete every Pod through the API so the kubelet tears sandboxes down (CNI DEL, unmounts)."""
        with contextlib.suppress(Exception):
            kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=2", "--wait=false")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._tasks():
                progress("  node drained (no containers left)")
                return
            time.sleep(1)
        progress(f"  {len(self._tasks())} containers still running after {timeout:.0f}s; killing them")

    def _tasks(self) -> list[str]:
        if not self.socket.exists():
            return []
        out = subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "tasks", "ls", "-q"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.split() if out.returncode == 0 else []

    def kill_containers(self) -> None:
        ctr = ["ctr", "--address", str(self.socket), "-n", "k8s.io"]
        for task in self._tasks():
            subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True)
        time.sleep(1)
        for task in self._tasks():
            subprocess.run([*ctr, "tasks", "delete", "-f", task], capture_output=True)

    def cleanup_host(self, progress: Progress) -> None:
        """After every node process is gone: leftover shims, mounts, the bridge and kube-proxy's rules."""
        sock = str(self.socket)
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmd = (pid_dir / "cmdline").read_bytes().split(b"\0")
                if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in cmd:
                    os.kill(int(pid_dir.name), 9)
        mounts = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                mp = line.split()[4]
                if mp.startswith(str(self.root)) or (mp.startswith("/run/netns/cni-")
                                                     or mp.startswith("/var/run/netns/cni-")):
                    mounts.append(mp)
        for mp in sorted(set(mounts), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for netns in list(Path("/run/netns").glob("cni-*")) if Path("/run/netns").exists() else []:
            with contextlib.suppress(OSError):
                netns.unlink()
        if (self.bin_dir / "kube-proxy").exists():
            subprocess.run([str(self.bin_dir / "kube-proxy"), "--cleanup", "--proxy-mode", "iptables"],
                           capture_output=True)
        for table in ("nat", "filter", "mangle"):  # the kubelet's own probe chain
            subprocess.run(["iptables", "-t", table, "-X", "KUBE-KUBELET-CANARY"], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        progress("  node cleaned up (shims, mounts, bridge, kube-proxy rules)")
