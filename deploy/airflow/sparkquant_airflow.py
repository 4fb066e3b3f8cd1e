"""Builds the spark-submit arguments of a sparkquant run for Airflow's SparkSubmitOperator (and for a shell).

Standard library only, so that the DAG and its tests import it without Airflow. The Spark settings come from the one
settings file of the project, ``conf/spark-defaults.conf.template`` (copy it beside this module in the DAG folder, or
point ``SPARKQUANT_SPARK_DEFAULTS`` at it); the executor's off-heap overhead and javacpp limits are sized from the
executor heap with the same rule as ``deploy/spark-settings.sh`` (a test compares the two). The job's options stay in the job file
(``--config``), which sparkquant itself reads, so the operator and the command line run the same job.

As a command (what the tests run, and a way to see what a DAG run will submit)::

    python3 sparkquant_airflow.py submit --master yarn --jar s3a://b/sparkquant.jar --model s3a://b/m \\
        --output s3a://b/m-gptq --job s3a://b/gptq-w4g128.yaml --calibration s3a://b/c.jsonl --eval-data s3a://b/t.txt
    python3 sparkquant_airflow.py settings --executor-memory 16g        # the Spark settings, key=value a line
    python3 sparkquant_airflow.py finished /local/output    # exit 0 finished, 3 not (local paths only)
"""

import argparse
import json
import os
import re
import sys

MAIN_CLASS = "org.sparkquant.cli.SparkQuant"
SETTINGS_NAME = "spark-defaults.conf.template"
# The OpenBLAS kernel set reaches executors and cluster-mode drivers through these settings.
CORETYPE_KEYS = ("spark.executorEnv.OPENBLAS_CORETYPE", "spark.yarn.appMasterEnv.OPENBLAS_CORETYPE",
                 "spark.kubernetes.driverEnv.OPENBLAS_CORETYPE")
_JAVACPP = re.compile(r"\s*-Dorg\.bytedeco\.javacpp\.max(?:physical)?bytes=\S*")
_GIB = re.compile(r"^([1-9][0-9]*)[gG]$")


class DeployError(ValueError):
    """Bad input to the helper: the message names the value and the problem."""


def settings_file(explicit=None):
    """The settings file: explicit, else $SPARKQUANT_SPARK_DEFAULTS, else beside this module, else the checkout's."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [explicit, os.environ.get("SPARKQUANT_SPARK_DEFAULTS"), os.path.join(here, SETTINGS_NAME),
                  os.path.join(here, "..", "..", "conf", SETTINGS_NAME)]
    for path in candidates:
        if path and os.path.isfile(path):
            return os.path.normpath(path)
    raise DeployError("no %s: copy it beside %s or set SPARKQUANT_SPARK_DEFAULTS" % (SETTINGS_NAME, __file__))


def read_spark_defaults(path):
    """The settings of a spark-defaults file ("key<whitespace>value", '#' comments), in file order."""
    settings = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            settings[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return settings


def gib(size, what="executor memory"):
    m = _GIB.match(str(size).strip())
    if not m:
        raise DeployError("%s %r: expected whole GiB such as 16g" % (what, size))
    return int(m.group(1))


def sized(settings, executor_memory=None, executor_cores=None, coretype=None):
    """The settings with the executor sized: overhead = heap, javacpp maxbytes = heap*5/6, maxphysicalbytes =
    2*heap - 2 (ND4J's arrays live off-heap; the limits keep javacpp inside the container)."""
    out = dict(settings)
    if executor_memory is not None:
        heap = gib(executor_memory)
        out["spark.executor.memory"] = "%dg" % heap
        out["spark.executor.memoryOverhead"] = "%dg" % heap
        rest = _JAVACPP.sub("", out.get("spark.executor.extraJavaOptions", "")).strip()
        limits = "-Dorg.bytedeco.javacpp.maxbytes=%dg -Dorg.bytedeco.javacpp.maxphysicalbytes=%dg" % (
            heap * 5 // 6, heap * 2 - 2)
        out["spark.executor.extraJavaOptions"] = (rest + " " + limits).strip()
    if executor_cores is not None:
        out["spark.executor.cores"] = str(int(executor_cores))
    kernel = coretype or out.get(CORETYPE_KEYS[0]) or "Haswell"
    for key in CORETYPE_KEYS:
        out[key] = kernel
    return out


def quantize_args(model, output, job=None, calibration=None, conf=None, extra=()):
    """sparkquant's arguments for a quantize attempt. Always --resume: a retry continues where the last attempt
    stopped, and a first attempt with nothing to resume starts a new run."""
    args = ["quantize", "--model", model, "--output", output]
    if job:
        args += ["--config", job]
    if calibration:
        args += ["--calibration", calibration]
    args += list(extra) + ["--resume"]
    return args + _conf_args(conf)


def verify_args(output, conf=None):
    return ["verify", "--model", output] + _conf_args(conf)


def eval_args(output, data, seq_len=None, conf=None):
    args = ["eval", "--model", output, "--data", data]
    if seq_len:
        args += ["--seq-len", str(int(seq_len))]
    return args + _conf_args(conf)


def _conf_args(conf):
    # fs.* settings (an endpoint, a region) for the driver's own reads and writes; never credentials
    out = []
    for key, value in (conf or {}).items():
        if re.search(r"(secret|access)[._-]?key|session[._-]?token|password", key, re.I):
            raise DeployError("setting %s: credentials do not go on a command line; use the AWS credential chain "
                              "(instance role, IRSA, environment from a secret)" % key)
        out += ["--conf", "%s=%s" % (key, value)]
    return out


def operator_kwargs(application_args, jar, executors=None, executor_memory=None, executor_cores=None,
                    driver_memory=None, deploy_mode="cluster", name="sparkquant", settings=None, coretype=None):
    """Keyword arguments of SparkSubmitOperator (or SparkSubmitHook) for one sparkquant command."""
    conf = sized(read_spark_defaults(settings_file(settings)), executor_memory, executor_cores, coretype)
    if driver_memory is not None:
        conf["spark.driver.memory"] = "%dg" % gib(driver_memory, "driver memory")
    kwargs = {"application": jar, "java_class": MAIN_CLASS, "conf": conf, "name": name,
              "application_args": list(application_args)}
    if executors is not None:
        # a setting rather than num_executors: the operator renders conf from the DAG's params at run time
        conf["spark.executor.instances"] = str(int(executors))
    if deploy_mode == "client":
        # the driver is the spark-submit child here: it needs the kernel choice in its environment
        kwargs["env_vars"] = {"OPENBLAS_CORETYPE": conf[CORETYPE_KEYS[0]]}
    return kwargs


def dag_conf(params):
    """The Spark settings of a DAG run, sized from its params (the DAG renders this at run time)."""
    return operator_kwargs([], params["jar"], params["executors"], params["executor_memory"],
                           params["executor_cores"], params["driver_memory"])["conf"]


def dag_args(step, params):
    """sparkquant's arguments for one step (quantize, verify, eval) of a DAG run, from its params."""
    conf = params.get("sparkquant_conf") or {}
    if step == "quantize":
        return quantize_args(params["model"], params["output"], params.get("job"), params.get("calibration"), conf)
    if step == "verify":
        return verify_args(params["output"], conf)
    if step == "eval":
        return eval_args(params["output"], params["eval_data"], params.get("seq_len"), conf)
    raise DeployError("unknown step %r: quantize, verify or eval" % step)


def spark_submit_command(kwargs, master, deploy_mode=None, spark_binary="spark-submit"):
    """The command line SparkSubmitHook runs for these keyword arguments and a connection with this master and
    deploy mode, in the hook's order (conf, name, class, deploy mode, application, arguments)."""
    cmd = [spark_binary, "--master", master]
    for key, value in kwargs.get("conf", {}).items():
        cmd += ["--conf", "%s=%s" % (key, value)]
    if kwargs.get("name"):
        cmd += ["--name", kwargs["name"]]
    if kwargs.get("java_class"):
        cmd += ["--class", kwargs["java_class"]]
    if deploy_mode:
        cmd += ["--deploy-mode", deploy_mode]
    return cmd + [kwargs["application"]] + list(kwargs.get("application_args", []))


def finished_markers(output):
    """What must exist for OUTPUT to be a finished sparkquant output, as alternatives: a checkpoint directory's
    _SUCCESS (written last), or a GGUF file together with its .sha256 (the file is renamed into place last)."""
    base = output.rstrip("/")
    return [[base + "/_SUCCESS"], [base, base + ".sha256"]]


def is_finished(output, exists):
    """Whether OUTPUT is finished, given exists(uri) -> bool for the output's file system."""
    return any(all(exists(uri) for uri in alternative) for alternative in finished_markers(output))


def local_exists(uri):
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in path:
        raise DeployError("%s: only local paths here; in Airflow the DAG checks other file systems" % uri)
    return os.path.isfile(path)


def _main(argv):
    p = argparse.ArgumentParser(prog="sparkquant_airflow.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="print the spark-submit command lines of quantize, verify and eval as JSON")
    s.add_argument("--master", required=True)
    s.add_argument("--deploy-mode", default="cluster", choices=["client", "cluster"])
    s.add_argument("--spark-submit", default="spark-submit", help="the spark-submit binary")
    s.add_argument("--jar", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--job", help="job file of quantize options (--config), e.g. a preset")
    s.add_argument("--calibration")
    s.add_argument("--eval-data")
    s.add_argument("--seq-len", type=int)
    s.add_argument("--executors", type=int)
    s.add_argument("--executor-memory")
    s.add_argument("--executor-cores", type=int)
    s.add_argument("--driver-memory")
    s.add_argument("--settings", help="spark-defaults file (default: " + SETTINGS_NAME + ")")
    s.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="sparkquant fs.* setting")
    t = sub.add_parser("settings", help="print the Spark settings, key=value a line, as deploy/spark-settings.sh")
    t.add_argument("--executor-memory")
    t.add_argument("--executor-cores", type=int)
    t.add_argument("--coretype", help="OpenBLAS kernel set (default: the file's)")
    t.add_argument("--settings", help="spark-defaults file (default: " + SETTINGS_NAME + ")")
    f = sub.add_parser("finished", help="exit 0 if a local OUTPUT is finished, 3 if not")
    f.add_argument("output")
    a = p.parse_args(argv)
    try:
        if a.command == "settings":
            conf = sized(read_spark_defaults(settings_file(a.settings)), a.executor_memory, a.executor_cores,
                         a.coretype)
            for key, value in conf.items():
                print("%s=%s" % (key, value))
            return 0
        if a.command == "finished":
            done = is_finished(a.output, local_exists)
            print(("finished: " if done else "not finished: ") + a.output)
            return 0 if done else 3
        bad = [kv for kv in a.conf if "=" not in kv]
        if bad:
            raise DeployError("--conf %s: expected KEY=VALUE" % bad[0])
        conf = dict(kv.split("=", 1) for kv in a.conf)
        commands = {"quantize": quantize_args(a.model, a.output, a.job, a.calibration, conf),
                    "verify": verify_args(a.output, conf)}
        if a.eval_data:
            commands["eval"] = eval_args(a.output, a.eval_data, a.seq_len, conf)
        out = {}
        for step, args in commands.items():
            kwargs = operator_kwargs(args, a.jar, a.executors, a.executor_memory, a.executor_cores,
                                     a.driver_memory, a.deploy_mode, "sparkquant-" + step, a.settings)
            out[step] = {"command": spark_submit_command(kwargs, a.master, a.deploy_mode, a.spark_submit),
                         "env": kwargs.get("env_vars", {})}
        json.dump(out, sys.stdout, indent=1)
        print()
        return 0
    except DeployError as e:
        print("sparkquant_airflow.py: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
