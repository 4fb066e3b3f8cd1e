"""Airflow DAG: quantize a model with sparkquant on Spark, then verify and evaluate the output.

Copy this file, sparkquant_airflow.py and conf/spark-defaults.conf.template into the DAG folder. Needs the Apache
Spark provider (apache-airflow-providers-apache-spark) and a Spark connection (SPARKQUANT_SPARK_CONN, default
spark_default) whose master and deploy mode are your cluster's; for the "already finished?" check of an s3a://,
gs:// or hdfs:// output, the Amazon, Google or HDFS provider and its connection (param storage_conn_id).

Retry-safe and idempotent by construction:
- every quantize attempt passes --resume: a retry continues from the last finished layer (the same bytes);
- every quantize attempt first looks for a finished output (_SUCCESS, or a GGUF file with its .sha256) and skips
  if there is one, so a rerun or a retry after a commit does not redo or refuse the work;
- a zombie attempt (a worker that Airflow lost while its Spark driver still runs) holds the output's lease: the
  retry exits 2 naming it and Airflow retries later. retry_delay is longer than --lease-timeout (600 s), so the
  retry after a dead attempt takes its lease over.
"""

import os
from datetime import datetime, timedelta

from airflow.exceptions import AirflowSkipException
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

try:  # Airflow 3
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models.param import Param

import sparkquant_airflow as sq

SPARK_CONN = os.environ.get("SPARKQUANT_SPARK_CONN", "spark_default")
LEASE_TIMEOUT_S = 600  # sparkquant's --lease-timeout default


def storage_exists(uri, conn_id):
    """Whether a file exists, through the Airflow connection of its file system."""
    scheme, _, rest = uri.partition("://")
    if not rest:
        return os.path.isfile(uri)
    bucket, _, key = rest.partition("/")
    if scheme in ("s3", "s3a", "s3n"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        return S3Hook(aws_conn_id=conn_id).check_for_key(key, bucket_name=bucket)
    if scheme == "gs":
        from airflow.providers.google.cloud.hooks.gcs import GCSHook
        return GCSHook(gcp_conn_id=conn_id).exists(bucket, key)
    if scheme in ("hdfs", "webhdfs"):
        from airflow.providers.apache.hdfs.hooks.webhdfs import WebHDFSHook
        return WebHDFSHook(webhdfs_conn_id=conn_id).check_for_path("/" + key)
    if scheme == "file":
        return os.path.isfile(rest)
    raise ValueError("%s: no finished-output check for %s:// (use s3a, gs, hdfs or a local path)" % (uri, scheme))


class QuantizeOperator(SparkSubmitOperator):
    """spark-submit of `sparkquant quantize --resume` that skips, at every attempt, an output already finished."""

    def execute(self, context):
        params = context["params"]
        output = params["output"]
        if sq.is_finished(output, lambda uri: storage_exists(uri, params["storage_conn_id"])):
            raise AirflowSkipException("%s is already a finished output: nothing to redo" % output)
        return super().execute(context)


with DAG(
    dag_id="sparkquant_quantize",
    description="GPTQ/RTN quantization with sparkquant on Spark, then verify and perplexity",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,  # conf and application_args render to a dict and a list
    user_defined_macros={"sparkquant_conf": sq.dag_conf, "sparkquant_args": sq.dag_args},
    default_args={"retries": 3, "retry_delay": timedelta(seconds=LEASE_TIMEOUT_S + 120)},
    params={
        "model": Param("s3a://models/llama-3-8b", type="string", description="Hugging Face checkpoint URI"),
        "output": Param("s3a://models/llama-3-8b-gptq-w4g128", type="string",
                        description="output directory, or a .gguf file"),
        "job": Param("/opt/sparkquant/conf/presets/gptq-w4g128.yaml", type="string",
                     description="job file (--config) or preset, readable by the driver: a path in the image "
                                 "or an s3a:// / hdfs:// URI"),
        "calibration": Param("s3a://data/c4-sample.jsonl", type=["null", "string"]),
        "eval_data": Param("s3a://data/wikitext-2-test.txt", type="string"),
        "seq_len": Param(None, type=["null", "integer"], description="eval window (default: sparkquant's)"),
        "jar": Param("local:///opt/sparkquant/lib/sparkquant.jar", type="string",
                     description="the shaded jar, as the cluster sees it"),
        "executors": Param(8, type="integer", minimum=1),
        "executor_memory": Param("24g", type="string", pattern="^[1-9][0-9]*[gG]$",
                                 description="heap per executor; off-heap and javacpp limits are sized from it"),
        "executor_cores": Param(4, type="integer", minimum=1),
        "driver_memory": Param("4g", type="string", pattern="^[1-9][0-9]*[gG]$"),
        "sparkquant_conf": Param({}, type="object",
                                 description="fs.* settings for sparkquant (e.g. fs.s3a.endpoint); no credentials"),
        "storage_conn_id": Param("aws_default", type="string",
                                 description="Airflow connection for the finished-output check"),
    },
    tags=["sparkquant"],
) as dag:
    common = {"conn_id": SPARK_CONN, "application": "{{ params.jar }}", "java_class": sq.MAIN_CLASS,
              "conf": "{{ sparkquant_conf(params) }}"}
    quantize = QuantizeOperator(task_id="quantize", name="sparkquant-quantize",
                                application_args="{{ sparkquant_args('quantize', params) }}", **common)
    # verify and eval also run when quantize skipped a finished output
    verify = SparkSubmitOperator(task_id="verify", name="sparkquant-verify", trigger_rule="none_failed",
                                 application_args="{{ sparkquant_args('verify', params) }}", **common)
    evaluate = SparkSubmitOperator(task_id="eval", name="sparkquant-eval",
                                   application_args="{{ sparkquant_args('eval', params) }}", **common)
    quantize >> verify >> evaluate
