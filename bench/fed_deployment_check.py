"""A real Flower deployment on loopback: one SuperLink and three SuperNodes, `flwr run` of the citkit app,
then the same run in-process; prints both matrices and whether they are equal.

    python bench/fed_deployment_check.py [WORK_DIR]

Starts its own processes (flower-superlink, flower-supernode x 3, flwr run) with FLWR_HOME in WORK_DIR,
telemetry, update checks and runtime dependency installation off, and stops them at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from fed_simulation_check import config  # the same small federation (this folder is on sys.path)

from citkit.eval.matrix import AccuracyMatrix
from citkit.federated.apps import config_to_json
from citkit.federated.runner import run
from citkit.io import load_tensors

APP = Path(__file__).resolve().parent.parent / "examples" / "federated-deployment"
BIN = Path(sys.executable).parent


def main() -> None:
    torch.set_num_threads(1)
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="fed-deploy-"))
    runs = work / "runs"
    deployed = config(runs, "deployment")
    settings = work / "settings.json"
    settings.write_text(config_to_json(deployed))
    (work / "run-config.toml").write_text(f'citkit-config = "{settings}"\n')
    home = work / "flwr"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
                                      'address = "127.0.0.1:8000"\ninsecure = true\n')
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # Flower starts its own executables by name
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        out = (logs / f"{name}.log").open("wb")
        started.append(subprocess.Popen([str(BIN / args[0]), *args[1:]], env=env, stdout=out, stderr=out,
                                        cwd=work))

    try:
        start("superlink", "flower-superlink", "--insecure")
        time.sleep(5)
        for i in range(3):
            start(f"supernode-{i}", "flower-supernode", "--insecure", "--superlink", "127.0.0.1:8000",
                  "--port", str(9094 + i),
                  "--node-config", f"partition-id={i} num-partitions=3")
        time.sleep(10)
        began = time.perf_counter()
        result = subprocess.run([str(BIN / "flwr"), "run", str(APP), "loopback", "--run-config",
                                 str(work / "run-config.toml"), "--stream"], env=env, cwd=work, timeout=1500,
                                capture_output=True, text=True)
        (logs / "flwr-run.log").write_text(result.stdout + result.stderr)
        seconds = time.perf_counter() - began
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(timeout=30)
    matrix_file = runs / "deployment" / "matrix.json"
    if not matrix_file.exists():
        print(f"the deployment wrote no matrix; see {logs}")
        return
    deployed_matrix = AccuracyMatrix.load(runs / "deployment")
    local = run(config(runs, "in-process"))
    print(f"deployment ({seconds:.0f} s): {deployed_matrix.rows}")
    print(f"in-process: {local.matrix.rows}")
    a = load_tensors(runs / "deployment" / "checkpoints" / "task_2" / "adapter.safetensors")
    b = load_tensors(local.run_dir / "checkpoints" / "task_2" / "adapter.safetensors")
    print(f"same matrix: {deployed_matrix.rows == local.matrix.rows}; largest adapter difference "
          f"{max(float((a[k] - b[k]).abs().max()) for k in a):.1e}")


if __name__ == "__main__":
    main()
