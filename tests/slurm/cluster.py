"""A throw-away single-node SLURM cluster on this host, for the live tests.

Debian's slurm-wlm (22.05) and munge, installed with apt-get when missing (root only). Everything
the cluster writes lives in one temporary directory of its own: slurm.conf with non-default ports,
its own munge key and socket, spool, log and pid files. Clients find it through SLURM_CONF. The
one thing outside that directory: Snakemake's jobstep runs ``srun`` inside each job with every
``SLURM_*`` variable stripped (SLURM_CONF included), so srun reads /etc/slurm/slurm.conf; when that
path is free a symlink to this cluster's slurm.conf is put there, and removed again at the end.

On exit the cluster cancels its own jobs, stops only the daemons it started (by their pid files,
checked against the process's command line) and removes only what it created. Packages it
installed stay installed. Anything that prevents start-up raises ``SlurmUnavailable`` with the
precise reason (the test turns it into a skip, which ``CI=true`` turns into a failure).
"""
from __future__ import annotations

import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel", "munged", "munge",
            "unmunge")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")  # where srun looks when SLURM_CONF is unset
PREFIX = "reprise-slurm-"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PR_SET_CHILD_SUBREAPER = 36
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")


class SlurmUnavailable(RuntimeError):
    """This host cannot run the local cluster; the message says why."""


@dataclass
class Daemon:
    name: str
    pid_file: Path
    pid: int | None = None


@dataclass
class LocalSlurm:
    root: Path
    conf: Path
    node: str
    partition: str
    cpus: int
    real_memory_mb: int
    env: dict[str, str]
    installed: list[str] = field(default_factory=list)  # packages this run installed with apt-get
    daemons: list[Daemon] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)  # paths outside root created by this run, newest last

    def run(self, *cmd: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, check=check)

    def log_tail(self, n: int = 15) -> str:
        out = []
        for log in sorted((self.root / "log").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-n:]
            out.append(f"--- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (MinJobAge keeps finished ones for 300 s): id, state, time limit,
        memory request, exit code and comment (the Snakemake plugin writes rule and wildcards there)."""
        fields = ("id", "state", "time_limit", "min_memory", "comment")
        res = self.run("squeue", "--noheader", "--states=all", "--format=%i|%T|%l|%m|%k")
        return [dict(zip(fields, line.split("|", len(fields) - 1))) for line in res.stdout.splitlines()
                if line.count("|") >= len(fields) - 1]


def _log_default(msg: str) -> None:
    print(f"[local-slurm] {msg}", flush=True)


def _which(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH + ":" + os.environ.get("PATH", ""))


def _missing_binaries() -> list[str]:
    return [b for b in BINARIES if _which(b) is None]


def _apt_install(log: Callable[[str], None]) -> list[str]:
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{', '.join(_missing_binaries())} missing and no apt-get to install "
                               f"{' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SBIN_PATH}
    t0 = time.monotonic()
    for cmd, limit in ((["apt-get", "update", "-q"], 300),
                       (["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], 600)):
        try:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"`{' '.join(cmd)}` did not finish in {limit} s") from None
        if res.returncode != 0:
            raise SlurmUnavailable(f"`{' '.join(cmd)}` failed (rc {res.returncode}): "
                                   f"{(res.stderr or res.stdout).strip()[-1500:]}")
    log(f"installed {' '.join(PACKAGES)} with apt-get in {time.monotonic() - t0:.1f} s")
    missing = _missing_binaries()
    if missing:
        raise SlurmUnavailable(f"apt-get installed {' '.join(PACKAGES)} but {', '.join(missing)} still missing")
    return list(PACKAGES)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _real_memory_mb() -> int:
    """Three quarters of MemTotal: slurmd drains a node whose RealMemory exceeds the real memory."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.75)
    raise SlurmUnavailable("cannot read MemTotal from /proc/meminfo")


def _slurm_conf(root: Path, node: str, partition: str, cpus: int, mem_mb: int, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
# Written by tests/slurm/cluster.py for one test session; removed with {root}.
ClusterName=reprise-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/ctld-spool
SlurmdSpoolDir={root}/slurmd-spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
# squeue as status command needs finished jobs to stay listed (the plugin checks MinJobAge >= 3 x its
# first poll); KillWait: SIGTERM -> SIGKILL grace of a job past its time limit or cancelled.
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _set_subreaper(on: bool) -> bool:
    """Make this process the reaper of the daemons it starts (PID 1 here may never reap them, which
    would leave <defunct> entries behind after teardown)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of ``pid``, None when it no longer exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _reap_zombie_children(keep: set[int] = frozenset()) -> None:
    """waitpid the exited intermediate processes of the daemons' double forks (our zombies only)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in keep:
            st = _proc_state(int(entry.name))
            if st and st[0] == "Z" and st[1] == me:
                try:
                    os.waitpid(int(entry.name), os.WNOHANG)
                except ChildProcessError:
                    pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_for(predicate: Callable[[], bool], seconds: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _stop_daemon(d: Daemon, cluster_root: Path, log: Callable[[str], None]) -> None:
    pid = d.pid
    if pid is None and d.pid_file.is_file():
        try:
            pid = int(d.pid_file.read_text().split()[0])
        except (ValueError, IndexError):
            pid = None
    if pid is None:
        return
    st = _proc_state(pid)
    if st is None:
        return
    if st[0] != "Z" and (d.name not in _cmdline(pid) or str(cluster_root) not in _cmdline(pid)):
        log(f"not stopping pid {pid}: it is not the {d.name} started for {cluster_root} ({_cmdline(pid)!r})")
        return
    if st[0] != "Z":
        os.kill(pid, signal.SIGTERM)
    gone = _wait_for(lambda: (s := _proc_state(pid)) is None or s[0] == "Z", 15)
    if not gone:
        log(f"{d.name} (pid {pid}) ignored SIGTERM for 15 s: SIGKILL")
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: (s := _proc_state(pid)) is None or s[0] == "Z", 5)
    st = _proc_state(pid)
    if st and st[0] == "Z" and st[1] == os.getpid():
        os.waitpid(pid, 0)
    log(f"stopped {d.name} (pid {pid})")


def _start_daemon(cluster: LocalSlurm, d: Daemon, cmd: list[str], log: Callable[[str], None],
                  user: str | None = None) -> None:
    as_user = {"user": user, "group": user, "extra_groups": []} if user else {}
    res = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=60, **as_user)
    if res.returncode != 0:
        raise SlurmUnavailable(f"`{' '.join(cmd)}` failed (rc {res.returncode}): {(res.stderr or res.stdout).strip()}"
                               f"\n{cluster.log_tail()}")
    if not _wait_for(lambda: d.pid_file.is_file() and d.pid_file.read_text().strip() != "", 15):
        raise SlurmUnavailable(f"{d.name} wrote no pid file {d.pid_file} within 15 s\n{cluster.log_tail()}")
    d.pid = int(d.pid_file.read_text().split()[0])
    cluster.daemons.append(d)
    log(f"started {d.name} (pid {d.pid})")


def _link_system_conf(cluster: LocalSlurm, log: Callable[[str], None]) -> None:
    if os.path.lexists(SYSTEM_CONF):
        if SYSTEM_CONF.is_symlink() and PREFIX in os.readlink(SYSTEM_CONF) and not SYSTEM_CONF.exists():
            log(f"removing the dangling {SYSTEM_CONF} -> {os.readlink(SYSTEM_CONF)} left by an earlier run")
            SYSTEM_CONF.unlink()
        else:
            raise SlurmUnavailable(
                f"{SYSTEM_CONF} exists and is not this test's: srun inside a Snakemake SLURM job reads it (the "
                "jobstep strips SLURM_CONF), so jobs would talk to another cluster; remove it or run elsewhere")
    if not SYSTEM_CONF.parent.is_dir():
        SYSTEM_CONF.parent.mkdir(parents=True)
        cluster.created.append(SYSTEM_CONF.parent)
    SYSTEM_CONF.symlink_to(cluster.conf)
    cluster.created.append(SYSTEM_CONF)
    log(f"linked {SYSTEM_CONF} -> {cluster.conf} (srun in jobs reads that path)")


def _teardown(cluster: LocalSlurm, log: Callable[[str], None]) -> None:
    if cluster.daemons and any(d.name == "slurmctld" for d in cluster.daemons):
        try:
            ids = [j["id"] for j in cluster.jobs() if j["state"] in ACTIVE]
            if ids:
                log(f"cancelling jobs still active: {' '.join(ids)}")
                cluster.run("scancel", *ids, timeout=30)
                _wait_for(lambda: not [j for j in cluster.jobs() if j["state"] in ACTIVE], 20, 0.5)
        except (subprocess.SubprocessError, OSError) as exc:
            log(f"could not cancel remaining jobs: {exc}")
    for d in reversed(cluster.daemons):  # slurmd, slurmctld, then munged
        try:
            _stop_daemon(d, cluster.root, log)
        except OSError as exc:
            log(f"stopping {d.name}: {exc}")
    for path in reversed(cluster.created):
        try:
            if path.is_symlink():
                if os.readlink(path) == str(cluster.conf):
                    path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        except OSError as exc:
            log(f"could not remove {path}: {exc}")
    shutil.rmtree(cluster.root, ignore_errors=True)
    log(f"removed {cluster.root}")


@contextmanager
def local_slurm(partition: str = "reprise", ctld_port: int = 6917, slurmd_port: int = 6918, cpus: int = 2,
                log: Callable[[str], None] = _log_default) -> Iterator[LocalSlurm]:
    """Start munged, slurmctld and slurmd on this host; yield the cluster; stop and remove it all."""
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"not root (euid {os.geteuid()}): installing slurm-wlm/munge and running slurmctld, "
                               "slurmd and munged needs root")
    installed = _apt_install(log) if _missing_binaries() else []
    for port in (ctld_port, slurmd_port):
        if not _port_free(port):
            raise SlurmUnavailable(f"TCP port {port} is in use (a slurmctld/slurmd left running by an earlier, killed "
                                   f"run? see `ss -ltnp | grep {port}`)")
    try:
        munge_user = pwd.getpwnam("munge")
    except KeyError:
        raise SlurmUnavailable("the munge package created no `munge` user") from None
    node = socket.gethostname().split(".")[0]
    cpus = max(1, min(cpus, os.cpu_count() or 1))
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))
    root.chmod(0o755)  # munged runs as `munge` and must traverse it
    conf = root / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": SBIN_PATH + ":" + os.environ.get("PATH", "")}
    cluster = LocalSlurm(root=root, conf=conf, node=node, partition=partition, cpus=cpus,
                         real_memory_mb=_real_memory_mb(), env=env, installed=installed)
    old_term = signal.getsignal(signal.SIGTERM)

    def _on_term(signum, _frame):  # a killed test run still tears the cluster down
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _on_term)
    try:
        for sub in ("ctld-spool", "slurmd-spool", "log", "run"):
            (root / sub).mkdir(mode=0o755)
        munge_dir = root / "munge"
        munge_dir.mkdir(mode=0o755)  # munged: the socket directory must be searchable by all
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for p in (munge_dir, key):
            os.chown(p, munge_user.pw_uid, munge_user.pw_gid)
        conf.write_text(_slurm_conf(root, node, partition, cpus, cluster.real_memory_mb, ctld_port, slurmd_port))
        _link_system_conf(cluster, log)

        t0 = time.monotonic()
        reaping = _set_subreaper(True)
        try:
            _start_daemon(cluster, Daemon("munged", munge_dir / "munged.pid"),
                          [_which("munged"), f"--socket={munge_dir}/munge.socket", f"--key-file={key}",
                           f"--pid-file={munge_dir}/munged.pid", f"--log-file={munge_dir}/munged.log",
                           f"--seed-file={munge_dir}/munged.seed"], log, user="munge")
            check = subprocess.run(f"munge -n -S {munge_dir}/munge.socket | unmunge -S {munge_dir}/munge.socket",
                                   shell=True, env=env, capture_output=True, text=True, timeout=30)
            if check.returncode != 0 or not re.search(r"STATUS:\s+Success", check.stdout):
                raise SlurmUnavailable(f"munge round trip failed: {check.stdout}{check.stderr}"
                                       f"\n{(munge_dir / 'munged.log').read_text(errors='replace')[-1500:]}")
            _start_daemon(cluster, Daemon("slurmctld", root / "run" / "slurmctld.pid"),
                          [_which("slurmctld"), "-f", str(conf)], log)
            _start_daemon(cluster, Daemon("slurmd", root / "run" / "slurmd.pid"),
                          [_which("slurmd"), "-f", str(conf), "-N", node], log)
        finally:
            if reaping:
                _reap_zombie_children(keep={d.pid for d in cluster.daemons if d.pid})
                _set_subreaper(False)

        def node_state() -> str:
            res = cluster.run("sinfo", "--noheader", "--Node", "--format=%t", "--partition", partition, timeout=20)
            return res.stdout.strip()

        if not _wait_for(lambda: node_state() == "idle", 30, 0.3):
            raise SlurmUnavailable(f"node {node} did not become idle in 30 s (state {node_state()!r})\n"
                                   f"{cluster.log_tail()}")
        log(f"node {node} idle {time.monotonic() - t0:.1f} s after start (CPUs={cpus}, RealMemory="
            f"{cluster.real_memory_mb} MB, partition {partition}, SLURM_CONF={conf})")
        # What the Snakemake jobstep does: srun inside a batch job, with SLURM_CONF stripped.
        smoke_out = root / "smoke.out"
        res = cluster.run("sbatch", "--parsable", "-p", partition, "-t", "2", "--mem", "100", "-o", str(smoke_out),
                          "--wrap", "env -u SLURM_CONF srun -n1 echo srun-ok", timeout=60)
        job = res.stdout.strip().split(";")[0]
        state = lambda: {j["id"]: j["state"] for j in cluster.jobs()}.get(job, "")  # noqa: E731
        finished = res.returncode == 0 and _wait_for(lambda: state() not in ("", *ACTIVE), 60, 0.2)
        text = smoke_out.read_text(errors="replace") if smoke_out.is_file() else ""
        if not finished or state() != "COMPLETED" or "srun-ok" not in text:
            raise SlurmUnavailable(f"smoke job (sbatch --wrap 'srun echo') failed: sbatch rc {res.returncode} "
                                   f"{res.stdout}{res.stderr}, state {state()!r}\njob output: {text}\n"
                                   f"{cluster.log_tail()}")
        log(f"smoke job {job} ran srun inside sbatch: {state()}")
        yield cluster
    finally:
        try:
            _teardown(cluster, log)
        finally:
            signal.signal(signal.SIGTERM, old_term)
