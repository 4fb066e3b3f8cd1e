package org.sparkquant.format.gptq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;
import org.sparkquant.io.DType;
import org.sparkquant.io.SafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorSpec;
import org.sparkquant.io.TensorStore;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.model.ModelInventory;
import org.sparkquant.testing.TestPython;

/**
 * Cross-checks against an independent Python implementation of the published unpacking (torch shift tables, 3-bit
 * fix-ups, v1 +1): what Java writes unpacks to Java's own dequantized weights, bit for bit, and checkpoints packed by
 * the AutoGPTQ loop in Python read back identically in Java.
 */
class GptqPythonCrossCheckTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static Path python;
    private final Storage storage = Storage.local();

    @BeforeAll
    static void requirePython() {
        python = TestPython.require("numpy", "torch", "safetensors"); // skips the class without them
    }

    @TempDir
    Path tmp;

    @ParameterizedTest(name = "{0}-bit g{1} sym={2} act-order={3} {4}")
    @CsvSource({
        "4, 32, true, true, llama",
        "8, -1, false, false, llama",
        "3, 32, false, true, qwen2",
        "2, 64, true, false, qwen2",
    })
    void javaWrittenCheckpointUnpacksToJavaDequantizedWeights(int bits, int groupSize, boolean sym, boolean actOrder,
            String type) throws Exception {
        String src = tmp.resolve("source").toString();
        // llama: FFN 172 (dense at 2/3/4 bits), bf16; qwen2: FFN 128, q/k/v bias, fp32
        boolean llama = type.equals("llama");
        GptqTestModels.write(storage, src, GptqTestModels.config(type, 64, llama ? 172 : 128, 2, 4, 2, 48, !llama,
                llama ? "bfloat16" : "float32"), llama ? DType.BF16 : DType.F32, bits * 31L + groupSize);
        String out = tmp.resolve("gptq").toString();
        Map<String, QuantizedLinear> supplied = new TreeMap<>();
        try (TensorStore store = TensorStore.open(storage, src)) {
            ModelInventory inventory = ModelInventory.of(ModelConfig.load(storage, src), store);
            GptqCheckpointWriter.write(storage, store, inventory, out,
                    GptqCheckpointWriter.Options.of(bits, groupSize, sym).withActOrder(actOrder, false)
                            .withMaxShardBytes(30_000),
                    m -> {
                        int[] perm = actOrder ? GptqTestModels.randomPermutation(m.inFeatures(), m.name().hashCode())
                                : null;
                        QuantizedLinear q = GptqTestModels.rtn(m.name(), store.readFloats(m.weight()), m.inFeatures(),
                                m.outFeatures(), bits, groupSize, sym, perm, null);
                        supplied.put(m.name(), q);
                        return q;
                    });
        }
        // Java's dequantization of the modules it was given, as float32 [out, in]
        String expect = tmp.resolve("java-dequant.safetensors").toString();
        List<TensorSpec> specs = new ArrayList<>();
        supplied.values().forEach(q -> specs.add(new TensorSpec(q.name(), DType.F32,
                new long[] {q.outFeatures(), q.inFeatures()})));
        Map<String, String> javaSha = new TreeMap<>();
        try (SafetensorsWriter w = SafetensorsWriter.create(storage.create(expect), expect, specs, Map.of())) {
            for (QuantizedLinear q : supplied.values()) {
                float[] dense = q.dequantize();
                ByteBuffer b = ByteBuffer.allocate(dense.length * 4).order(ByteOrder.LITTLE_ENDIAN);
                b.asFloatBuffer().put(dense);
                w.write(q.name(), b.array());
                javaSha.put(q.name(), GptqCheckpointReaderTest.sha256(dense));
            }
        }
        TestPython.Result r = TestPython.run(python, List.of("python/gptq_checkpoint_check.py", out, "--expect", expect,
                "--source", src), 300);
        JsonNode report = JSON.readTree(r.stdout());
        assertEquals(0, r.exitCode(), report.get("errors") + "\n" + r.stderr());
        assertEquals(0, report.get("errors").size());
        assertEquals(supplied.size(), report.get("quantized").asInt());
        assertTrue(report.get("dense_identical").asInt() >= 5, report.toString());
        for (Map.Entry<String, String> e : javaSha.entrySet()) {
            JsonNode m = report.get("modules").get(e.getKey());
            assertEquals(0.0, m.get("max_abs_diff").asDouble(), e.getKey());
            assertEquals(e.getValue(), m.get("sha256").asText(), e.getKey());
        }
    }

    @Test
    void pythonPackedCheckpointsOfEveryKindReadIdentically() throws Exception {
        Path dir = tmp.resolve("autogptq");
        TestPython.check(python, List.of("python/gptq_checkpoint_make.py", dir.toString(), "--set", "all",
                "--seed", "77"), 600);
        // 4 widths × {sym v1, asym v2, asym v1} × act-order on/off × group 32 / -1, 7 modules each
        assertEquals(48 * 7, GptqCheckpointReaderTest.checkAgainstExpected(storage, dir));
    }
}
