package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.testing.TestPython;

/**
 * gguf-py (the reference Python reader) on Java exports of every quantized file type: it sees the same metadata
 * keys and tensors (names, shapes, types, offsets), and its dequantization of every tensor equals Java's.
 */
class GgufPyExportTest {
    @TempDir
    Path tmp;

    @Test
    void ggufPyReadsAndDequantizesEveryExportType() throws IOException {
        Path python = TestPython.require("gguf", "numpy");
        Path model = GgufTestModels.write(tmp, "llama3");
        for (LlamaFileType type : List.of(LlamaFileType.Q8_0, LlamaFileType.Q4_0, LlamaFileType.Q4_1,
                LlamaFileType.Q5_0, LlamaFileType.Q5_1, LlamaFileType.Q2_K, LlamaFileType.Q3_K_M,
                LlamaFileType.Q4_K_M, LlamaFileType.Q5_K_M, LlamaFileType.Q6_K, LlamaFileType.BF16)) {
            Path f = GgufLlamaCppTest.export(model, type, tmp);
            Path out = tmp.resolve("py-" + type);
            TestPython.check(python, List.of("python/gguf_check.py", f.toString(), out.toString()), 300);
            JsonNode s = new ObjectMapper().readTree(out.resolve("summary.json").toFile());
            try (GgufReader r = GgufReader.open(f)) {
                List<String> keys = new ArrayList<>();
                s.get("kvs").forEach(kv -> keys.add(kv.get("key").asText()));
                assertEquals(List.copyOf(r.metadata().keySet()), keys, type.name());
                assertEquals(r.dataStart(), s.get("data_offset").asLong());
                JsonNode ts = s.get("tensors");
                assertEquals(r.tensors().size(), ts.size());
                for (int i = 0; i < ts.size(); i++) {
                    GgufTensorInfo t = r.tensors().get(i);
                    JsonNode jt = ts.get(i);
                    String what = type + " " + t.name();
                    assertEquals(t.name(), jt.get("name").asText(), what);
                    assertEquals(t.type().name(), jt.get("type").asText(), what);
                    assertEquals(r.dataStart() + t.offset(), jt.get("offset").asLong(), what);
                    if (t.type() == GgmlType.BF16) {
                        continue; // gguf_check.py has no BF16 dequantizer
                    }
                    byte[] b = Files.readAllBytes(out.resolve(i + ".f32"));
                    float[] py = new float[b.length / 4];
                    ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(py);
                    assertArrayEquals(py, r.readFloats(t.name()), what);
                }
            }
        }
    }
}
