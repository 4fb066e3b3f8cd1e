package org.sparkquant.format.gptq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.DType;
import org.sparkquant.io.SafetensorsWriter;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorInfo;
import org.sparkquant.io.TensorSpec;
import org.sparkquant.io.TensorStore;
import org.sparkquant.testing.TestPaths;

/**
 * Reads checkpoints in the AutoGPTQ / GPTQModel layout written by {@code python/gptq_checkpoint_make.py} (committed
 * under fixtures/format-gptq/autogptq) and checks that broken ones fail with one clear line.
 */
class GptqCheckpointReaderTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String Q = "model.layers.0.self_attn.q_proj";
    private final Storage storage = Storage.local();

    @TempDir
    Path tmp;

    static Path fixtures() {
        return TestPaths.fixtures("format-gptq").resolve("autogptq");
    }

    static String sha256(float[] w) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(w.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(w);
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b.array()));
    }

    /** Checks every module of every checkpoint under {@code root} against its expected.json; returns how many. */
    static int checkAgainstExpected(Storage storage, Path root) throws Exception {
        int checked = 0;
        List<Path> variants;
        try (Stream<Path> s = Files.list(root)) {
            variants = s.filter(Files::isDirectory).sorted().toList();
        }
        for (Path dir : variants) {
            JsonNode expected = JSON.readTree(dir.resolve("expected.json").toFile());
            try (GptqCheckpoint ckpt = GptqCheckpoint.open(storage, dir.toString())) {
                assertEquals(expected.get("variant").get("sym").asBoolean(), ckpt.quantization().sym(), dir.toString());
                assertEquals(expected.get("variant").get("format").asText(), ckpt.quantization().format().id());
                for (Iterator<Map.Entry<String, JsonNode>> it = expected.get("modules").fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    String module = e.getKey();
                    JsonNode m = e.getValue();
                    String what = dir.getFileName() + " " + module;
                    assertEquals(m.get("quantized").asBoolean(), ckpt.isQuantized(module), what);
                    if (m.get("quantized").asBoolean()) {
                        GptqConfig.ModuleParams p = ckpt.params(module).orElseThrow();
                        assertEquals(m.get("bits").asInt(), p.bits(), what);
                        assertEquals(m.get("group_size").asInt(), p.groupSize(), what);
                    }
                    assertEquals(m.get("sha256").asText(), sha256(ckpt.weight(module)), what);
                    checked++;
                }
                assertTrue(ckpt.warnings().stream().noneMatch(w -> w.contains("zero point of -1")), ckpt.warnings()
                        .toString());
            }
        }
        return checked;
    }

    @Test
    void readsAutoGptqLayoutWithIdenticalDenseWeights() throws Exception {
        assertEquals(10 * 7 + 8, checkAgainstExpected(storage, fixtures())); // one variant quantizes lm_head too
    }

    @Test
    void findsTheConfigWhereAutoGptqAndGptqModelLook() {
        try (GptqCheckpoint a = open("b4_asym_gptqv2_g32_act"); GptqCheckpoint b = open("b3_sym_gptq_g32_act");
                GptqCheckpoint c = open("b2_sym_gptq_g16_nokeys"); GptqCheckpoint d = open("b4_sym_gptq_g32_dynamic")) {
            assertTrue(a.quantizationSource().endsWith("quant_config.json"), a.quantizationSource());
            assertEquals(4, a.quantization().bits()); // from w_bit
            assertEquals(32, a.quantization().groupSize()); // from q_group_size
            assertTrue(b.quantizationSource().endsWith("config.json quantization_config"), b.quantizationSource());
            assertTrue(c.quantization().sym());
            assertEquals(GptqConfig.Format.GPTQ, c.quantization().format());
            assertTrue(c.warnings().get(0).contains("no 'sym' key"), c.warnings().toString());
            assertFalse(d.isQuantized("model.layers.0.mlp.down_proj"));
            assertEquals(new GptqConfig.ModuleParams(8, 64, true, false), d.params("model.layers.0.mlp.up_proj")
                    .orElseThrow());
            assertFalse(a.quantized(Q).sequentialGroups());
            assertEquals(6, d.verify());
        }
    }

    private GptqCheckpoint open(String variant) {
        return GptqCheckpoint.open(storage, fixtures().resolve(variant).toString());
    }

    // ---- broken checkpoints ----

    private record Raw(DType dtype, long[] shape, byte[] data) {}

    /** A copy of a fixture variant whose tensors and configs the edit may change. */
    private Path copy(String variant) throws IOException {
        Path dir = Files.createTempDirectory(tmp, variant);
        try (Stream<Path> s = Files.list(fixtures().resolve(variant))) {
            for (Path f : s.toList()) {
                Files.copy(f, dir.resolve(f.getFileName()));
            }
        }
        return dir;
    }

    private void editTensors(Path dir, Consumer<Map<String, Raw>> edit) {
        Map<String, Raw> tensors = new LinkedHashMap<>();
        try (TensorStore store = TensorStore.open(storage, dir.toString())) {
            for (String name : store.names()) {
                TensorInfo info = store.info(name);
                tensors.put(name, new Raw(info.dtype(), info.shape(), store.readRaw(name)));
            }
        }
        edit.accept(tensors);
        List<TensorSpec> specs = new ArrayList<>();
        tensors.forEach((name, raw) -> specs.add(new TensorSpec(name, raw.dtype(), raw.shape())));
        String uri = dir.resolve("model.safetensors").toString();
        try (SafetensorsWriter w = SafetensorsWriter.create(storage.create(uri), uri, specs, Map.of("format", "pt"))) {
            tensors.forEach((name, raw) -> w.write(name, raw.data()));
        }
    }

    private static void setInt(Raw raw, int index, int value) {
        ByteBuffer.wrap(raw.data()).order(ByteOrder.LITTLE_ENDIAN).putInt(index * 4, value);
    }

    /** Asserts a one-line bad-input error containing every fragment, at open or at the first module read. */
    private void assertBroken(Path dir, String... fragments) {
        Executable read = () -> {
            try (GptqCheckpoint c = GptqCheckpoint.open(storage, dir.toString())) {
                c.verify();
            }
        };
        SparkQuantException e = assertThrows(SparkQuantException.class, read);
        assertEquals(2, e.exitCode(), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "'" + f + "' not in: " + e.getMessage());
        }
    }

    @Test
    void wrongQweightShape() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        editTensors(dir, t -> {
            Raw q = t.get(Q + ".qweight");
            t.put(Q + ".qweight", new Raw(DType.I32, new long[] {16, 32}, q.data())); // [8, 64] expected
        });
        assertBroken(dir, "model.safetensors: tensor '" + Q + ".qweight' has shape [16, 32], expected [8, 64]",
                "4 bits");
    }

    @Test
    void wrongDtype() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        editTensors(dir, t -> t.put(Q + ".qzeros", new Raw(DType.F32, t.get(Q + ".qzeros").shape(),
                t.get(Q + ".qzeros").data())));
        assertBroken(dir, "tensor '" + Q + ".qzeros' has dtype F32, expected I32");
    }

    @Test
    void missingScales() throws Exception {
        Path dir = copy("b3_asym_gptqv2_gall");
        editTensors(dir, t -> t.remove("model.layers.0.mlp.down_proj.scales"));
        assertBroken(dir, "missing tensor 'model.layers.0.mlp.down_proj.scales' of quantized module", "3 bits");
    }

    @Test
    void gIdxOutOfRange() throws Exception {
        Path dir = copy("b4_asym_gptqv2_g32_act");
        editTensors(dir, t -> setInt(t.get(Q + ".g_idx"), 5, 2)); // 2 groups: [0, 2)
        assertBroken(dir, "tensor '" + Q + ".g_idx' g_idx[5] = 2 is outside [0, 2)");
    }

    @Test
    void permutedGIdxWithoutDescAct() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        editTensors(dir, t -> {
            setInt(t.get(Q + ".g_idx"), 0, 1);
            setInt(t.get(Q + ".g_idx"), 40, 0);
        });
        assertBroken(dir, "g_idx[0] = 1 but desc_act is false");
    }

    @Test
    void symmetricZerosThatAreNot() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        // v2-style stored zeros (8) in a v1 file read as 9
        editTensors(dir, t -> setInt(t.get(Q + ".qzeros"), 0, 0x88888888));
        assertBroken(dir, "tensor '" + Q + ".qzeros' zero point 9 of group 0, channel 0 is not 8", "v2 zero points");
    }

    @Test
    void v1ZeroOfMinusOneIsReadAsZeroWithAWarning() throws Exception {
        Path dir = copy("b4_asym_gptq_g32"); // AutoGPTQ sym=False in v1: zeros ≥ 1 are fine
        int[] stored = new int[1];
        editTensors(dir, t -> {
            Raw z = t.get(Q + ".qzeros");
            stored[0] = ByteBuffer.wrap(z.data()).order(ByteOrder.LITTLE_ENDIAN).getInt(0);
            setInt(z, 0, (stored[0] & ~0xF) | 0xF); // channel 0 of group 0 stored as -1 & 15
        });
        try (GptqCheckpoint c = GptqCheckpoint.open(storage, dir.toString())) {
            QuantizedLinear q = c.quantized(Q);
            assertEquals(0, q.zero(0, 0));
            assertEquals(((stored[0] >>> 4) & 0xF) + 1, q.zero(0, 1)); // neighbours untouched
            assertTrue(c.warnings().stream().anyMatch(w -> w.contains(Q + ".qzeros' stores a v1 zero point of -1")),
                    c.warnings().toString());
        }
    }

    @Test
    void nonFiniteScale() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        editTensors(dir, t -> {
            byte[] d = t.get(Q + ".scales").data();
            d[2] = 0x00;
            d[3] = 0x7e; // fp16 NaN at channel 1
        });
        assertBroken(dir, "tensor '" + Q + ".scales' scale of group 0, channel 1 is NaN");
    }

    @Test
    void denseWeightNextToQweight() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        editTensors(dir, t -> t.put(Q + ".weight", new Raw(DType.F16, new long[] {64, 64}, new byte[64 * 64 * 2])));
        assertBroken(dir, "tensor '" + Q + ".weight' module " + Q + " is quantized but also has a dense weight");
    }

    @Test
    void missingDenseTensor() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        editTensors(dir, t -> t.remove("model.norm.weight"));
        assertBroken(dir, "missing tensor 'model.norm.weight'");
    }

    @Test
    void unsupportedBits() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        Path qc = dir.resolve("quantize_config.json");
        Files.writeString(qc, Files.readString(qc).replace("\"bits\": 4", "\"bits\": 5"));
        assertBroken(dir, "quantize_config.json: bits 5 is not supported");
    }

    @Test
    void configDisagreesWithTensors() throws Exception {
        Path dir = copy("b4_sym_gptq_g32");
        Path qc = dir.resolve("quantize_config.json");
        Files.writeString(qc, Files.readString(qc).replace("\"bits\": 4", "\"bits\": 8"));
        assertBroken(dir, "tensor '" + Q + ".qweight' has shape [8, 64], expected [16, 64]", "8 bits");
    }

    @Test
    void dynamicExclusionMustMatchTheTensors() throws Exception {
        Path dir = copy("b4_sym_gptq_g32_dynamic");
        Path qc = dir.resolve("quantize_config.json");
        // excluding q_proj, which is stored quantized
        Files.writeString(qc, Files.readString(qc).replace("\"-:.*down_proj\"", "\"-:.*q_proj\""));
        assertBroken(dir, "tensor '" + Q + ".qweight' module " + Q + " is excluded from quantization");
        Path dir2 = copy("b4_sym_gptq_g32_dynamic");
        Path qc2 = dir2.resolve("quantize_config.json");
        // no exclusion: down_proj, stored dense, should have been quantized
        Files.writeString(qc2, Files.readString(qc2).replace("\"-:.*down_proj\"", "\"-:nothing\""));
        assertBroken(dir2, "missing tensor 'model.layers.0.mlp.down_proj.qweight' of quantized module");
    }

    @Test
    void notAGptqCheckpoint() throws Exception {
        Path dir = copy("b3_sym_gptq_g32_act"); // its config lives in config.json only
        Path config = dir.resolve("config.json");
        JsonNode root = JSON.readTree(config.toFile());
        ((com.fasterxml.jackson.databind.node.ObjectNode) root).remove("quantization_config");
        Files.writeString(config, JSON.writeValueAsString(root));
        assertBroken(dir, "not a GPTQ checkpoint (no quantize_config.json, quant_config.json or quantization_config");
    }
}
