"""Tests of the Airflow helper (no Airflow needed) and, where Airflow is installed, of the DAG itself."""

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
AIRFLOW_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(AIRFLOW_DIR))
sys.path.insert(0, AIRFLOW_DIR)

import sparkquant_airflow as sq  # noqa: E402

TEMPLATE = os.path.join(REPO, "conf", "spark-defaults.conf.template")
PARAMS = {"model": "s3a://m/llama", "output": "s3a://o/llama-gptq", "job": "/opt/sparkquant/conf/presets/x.yaml",
          "calibration": "s3a://d/c.jsonl", "eval_data": "s3a://d/t.txt", "seq_len": 512,
          "jar": "local:///opt/sparkquant/lib/sparkquant.jar", "executors": 5, "executor_memory": "12g",
          "executor_cores": 3, "driver_memory": "2g", "sparkquant_conf": {"fs.s3a.endpoint": "https://s3.x"}}


def write(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_reads_spark_defaults_in_file_order(tmp_path):
    f = tmp_path / "d.conf"
    f.write_text("# comment\n\n  spark.b   2\nspark.a\tx y  \nspark.c\n")
    assert list(sq.read_spark_defaults(str(f)).items()) == [("spark.b", "2"), ("spark.a", "x y"), ("spark.c", "")]


def test_the_template_at_its_own_size_is_unchanged():
    t = sq.read_spark_defaults(TEMPLATE)
    assert sq.sized(t, t["spark.executor.memory"], t["spark.executor.cores"]) == t


def test_sizing_rule_keeps_other_java_options():
    s = sq.sized({"spark.executor.extraJavaOptions": "-XX:+UseG1GC -Dorg.bytedeco.javacpp.maxbytes=1g"}, "12g", 2,
                 "SkylakeX")
    assert s["spark.executor.memory"] == "12g"
    assert s["spark.executor.memoryOverhead"] == "12g"
    assert s["spark.executor.extraJavaOptions"] == (
        "-XX:+UseG1GC -Dorg.bytedeco.javacpp.maxbytes=10g -Dorg.bytedeco.javacpp.maxphysicalbytes=22g")
    assert s["spark.executor.cores"] == "2"
    assert {s[k] for k in sq.CORETYPE_KEYS} == {"SkylakeX"}


@pytest.mark.parametrize("size", ["12", "12G5", "0g", "12000m", ""])
def test_sizes_must_be_whole_gib(size):
    with pytest.raises(sq.DeployError, match="expected whole GiB"):
        sq.sized({}, size)


def test_quantize_always_resumes_and_takes_the_job_file():
    args = sq.dag_args("quantize", PARAMS)
    assert args == ["quantize", "--model", "s3a://m/llama", "--output", "s3a://o/llama-gptq", "--config",
                    "/opt/sparkquant/conf/presets/x.yaml", "--calibration", "s3a://d/c.jsonl", "--resume",
                    "--conf", "fs.s3a.endpoint=https://s3.x"]
    assert sq.dag_args("verify", PARAMS) == ["verify", "--model", "s3a://o/llama-gptq", "--conf",
                                             "fs.s3a.endpoint=https://s3.x"]
    assert sq.dag_args("eval", PARAMS)[:7] == ["eval", "--model", "s3a://o/llama-gptq", "--data", "s3a://d/t.txt",
                                               "--seq-len", "512"]
    with pytest.raises(sq.DeployError):
        sq.dag_args("export", PARAMS)


@pytest.mark.parametrize("key", ["fs.s3a.secret.key", "fs.s3a.access.key", "fs.s3a.session.token",
                                 "fs.azure.account.key.password"])
def test_credentials_are_refused_on_the_command_line(key):
    with pytest.raises(sq.DeployError, match="credentials"):
        sq.quantize_args("m", "o", conf={key: "x"})


def test_dag_conf_is_the_template_sized_by_the_params():
    conf = sq.dag_conf(PARAMS)
    template = sq.read_spark_defaults(TEMPLATE)
    assert conf["spark.executor.instances"] == "5"
    assert conf["spark.executor.memory"] == "12g" and conf["spark.executor.cores"] == "3"
    assert conf["spark.driver.memory"] == "2g"
    sized_keys = {"spark.executor.memory", "spark.executor.memoryOverhead", "spark.executor.extraJavaOptions",
                  "spark.executor.cores", "spark.driver.memory"}
    for key, value in template.items():
        if key not in sized_keys:
            assert conf[key] == value, key


def test_command_line_in_the_hooks_order():
    kwargs = sq.operator_kwargs(["verify", "--model", "o"], "app.jar", executors=2, deploy_mode="client")
    cmd = sq.spark_submit_command(kwargs, "yarn", "client", "/opt/spark/bin/spark-submit")
    assert cmd[:3] == ["/opt/spark/bin/spark-submit", "--master", "yarn"]
    assert cmd[-10:] == ["--name", "sparkquant", "--class", sq.MAIN_CLASS, "--deploy-mode", "client", "app.jar",
                         "verify", "--model", "o"]
    assert "spark.executor.instances=2" in cmd
    assert kwargs["env_vars"] == {"OPENBLAS_CORETYPE": "Haswell"}
    assert "env_vars" not in sq.operator_kwargs([], "app.jar", deploy_mode="cluster")


def test_finished_checkpoint_needs_its_success_manifest(tmp_path):
    out = str(tmp_path / "out")
    write(os.path.join(out, "_work", "run.json"), "{}")
    write(os.path.join(out, "model.safetensors"))
    assert not sq.is_finished(out, sq.local_exists)
    write(os.path.join(out, "_SUCCESS"), "manifest")
    assert sq.is_finished(out, sq.local_exists)
    assert sq.is_finished(out + "/", sq.local_exists)
    assert sq.is_finished("file://" + out, sq.local_exists)


def test_finished_gguf_needs_the_file_and_its_checksum(tmp_path):
    out = str(tmp_path / "m-Q4_K_M.gguf")
    write(out + ".sha256", "abc  m-Q4_K_M.gguf\n")  # written before the rename: alone it is not finished
    assert not sq.is_finished(out, sq.local_exists)
    write(out, "GGUF")
    assert sq.is_finished(out, sq.local_exists)
    os.remove(out + ".sha256")
    assert not sq.is_finished(out, sq.local_exists)


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(AIRFLOW_DIR, "sparkquant_airflow.py")] + list(args),
                          capture_output=True, text=True, timeout=60)


def test_cli_errors_are_one_line_with_exit_2():
    r = run_cli("finished", "s3a://bucket/out")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "only local paths" in r.stderr
    r = run_cli("submit", "--master", "yarn", "--jar", "j", "--model", "m", "--output", "o",
                "--executor-memory", "24000m")
    assert r.returncode == 2 and "expected whole GiB" in r.stderr


def test_cli_submit_prints_each_step():
    r = run_cli("submit", "--master", "yarn", "--jar", "j.jar", "--model", "m", "--output", "o", "--eval-data", "t")
    assert r.returncode == 0, r.stderr
    steps = json.loads(r.stdout)
    assert sorted(steps) == ["eval", "quantize", "verify"]
    assert steps["quantize"]["command"][-1] == "--resume"
    assert steps["quantize"]["env"] == {}  # cluster mode: the kernel choice travels in the settings


def test_dag_loads_in_airflow():
    pytest.importorskip("airflow", reason="Airflow is not installed here (not installable on this machine); "
                                          "the DAG's helpers are tested above without it")
    from airflow.models import DagBag
    bag = DagBag(dag_folder=os.path.join(AIRFLOW_DIR, "sparkquant_dag.py"), include_examples=False)
    assert bag.import_errors == {}
    dag = bag.get_dag("sparkquant_quantize")
    assert [t.task_id for t in dag.topological_sort()] == ["quantize", "verify", "eval"]
    assert type(dag.get_task("quantize")).__name__ == "QuantizeOperator"
    assert dag.get_task("verify").trigger_rule == "none_failed"
    for task in dag.tasks:
        assert task.retries >= 1 and task.retry_delay > timedelta(seconds=600)
    assert set(PARAMS) <= set(dag.params.keys())


def dag_param_defaults():
    """The DAG's params and their defaults, read from its source (no Airflow needed)."""
    import ast
    with open(os.path.join(AIRFLOW_DIR, "sparkquant_dag.py")) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "params" and isinstance(node.value, ast.Dict):
            return {ast.literal_eval(k): ast.literal_eval(v.args[0]) for k, v in zip(node.value.keys,
                                                                                      node.value.values)}
    raise AssertionError("no params={...} in the DAG")


def test_dag_defaults_make_valid_commands():
    params = dag_param_defaults()
    assert set(PARAMS) <= set(params), "the params the helper reads are the DAG's"
    conf = sq.dag_conf(params)
    assert conf["spark.executor.memory"] == params["executor_memory"]
    assert conf["spark.executor.instances"] == str(params["executors"])
    assert sq.dag_args("quantize", params)[-1] == "--resume"
    assert sq.dag_args("eval", params)[:5] == ["eval", "--model", params["output"], "--data", params["eval_data"]]
    # the preset named by default ships in the image (conf/ is copied to /opt/sparkquant/conf)
    assert params["job"].startswith("/opt/sparkquant/conf/")
    assert os.path.isfile(os.path.join(REPO, params["job"][len("/opt/sparkquant/"):]))
