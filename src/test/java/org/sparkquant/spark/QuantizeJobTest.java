package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.TreeMap;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.sparkquant.SparkQuantException;
import org.sparkquant.format.gguf.LlamaFileType;
import org.sparkquant.gptq.Precision;
import org.sparkquant.gptq.QuantConfig;

/** The job spec: option values parsed, defaults derived, impossible combinations refused with one line. */
class QuantizeJobTest {
    private static QuantizeJob.Builder base() {
        return QuantizeJob.builder("s3a://b/model", "s3a://b/out").calibration("s3a://b/calib.txt");
    }

    @Test
    void defaultsAreTheCommandLinesDefaults() {
        QuantizeJob job = base().build();
        assertEquals(QuantizeJob.Method.GPTQ, job.method());
        assertEquals(QuantizeJob.Format.GPTQ, job.format());
        assertEquals(QuantConfig.defaults(), job.quant());
        assertEquals(128, job.samples());
        assertEquals(2048, job.seqLen());
        assertEquals(4L << 30, job.maxShardBytes());
        assertTrue(job.trueSequential());
        assertNull(job.ggufType());
        assertTrue(job.inputs().isEmpty());
    }

    @Test
    void formatAndMethodFollowTheOutputAndTheCalibration() {
        QuantizeJob gguf = QuantizeJob.builder("m", "out/model-Q4_K_M.gguf").build();
        assertEquals(QuantizeJob.Format.GGUF, gguf.format());
        assertEquals(QuantizeJob.Method.RTN, gguf.method(), "a GGUF output without calibration is RTN");
        assertEquals(LlamaFileType.Q4_K_M, gguf.ggufType());
        assertEquals(QuantizeJob.Method.GPTQ, QuantizeJob.builder("m", "o.GGUF").calibration("c").build().method());
        // an RTN checkpoint ignores the calibration data, so it cannot decide a resume
        QuantizeJob rtn = base().method("rtn").build();
        assertNull(rtn.calibration());
        assertEquals(Precision.FP64, base().precision("FP64").build().quant().precision());
    }

    @Test
    void impossibleCombinationsAreRefusedNamingTheOption() {
        refused(b -> b.format("tar"), "--format must be gptq, gguf or auto, got 'tar'");
        refused(b -> b.method("awq"), "--method must be gptq or rtn");
        refused(b -> b.importance("max"), "--importance must be none or hessian-diag");
        refused(b -> b.precision("fp16"), "--precision must be fp32 or fp64");
        refused(b -> b.unpackable("skip"), "--unpackable must be dense or error");
        refused(b -> b.samples(0), "--samples and --samples-per-partition must be positive");
        refused(b -> b.seqLen(1), "--seq-len at least 2");
        refused(b -> b.samplesPerPartition(-1), "--samples-per-partition must be positive");
        refused(b -> b.maxShardBytes(0), "--max-shard-size must be positive");
        refused(b -> b.format("gguf").quant(QuantConfig.defaults().withDescAct(true)), "--desc-act and --static-groups");
        refused(b -> b.importance("hessian-diag"), "--importance applies to GGUF outputs");
        refused(b -> b.calibration(null), "--method gptq needs --calibration URI");
        refused(b -> b.calibration(null).format("gguf").importance("hessian-diag"), "--importance hessian-diag needs");
        refused(b -> b.calibration(null).method("rtn").exportImatrix("x.dat"), "--export-imatrix needs");
        refused(b -> b.format("gguf").ggufType("Q9_Z"), "Q9_Z");
    }

    @Test
    void inputsAreRecordedAndDescribed() {
        var inputs = new TreeMap<String, String>();
        inputs.put("model/config.json", "123:abc");
        QuantizeJob job = base().build().withInputs(inputs);
        inputs.put("model/extra", "changed after the fact");
        assertEquals(1, job.inputs().size(), "the job keeps its own copy");
        assertTrue(job.describe().contains("\"model/config.json\" : \"123:abc\""), job.describe());
        assertEquals(base().build().withInputs(job.inputs()), job);
    }

    private static void refused(UnaryOperator<QuantizeJob.Builder> change, String message) {
        SparkQuantException e = assertThrows(SparkQuantException.class, () -> change.apply(base()).build());
        assertTrue(e.getMessage().contains(message), e.getMessage());
        assertEquals(2, e.exitCode(), e.getMessage());
    }
}
