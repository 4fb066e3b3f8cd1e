package org.sparkquant.format.gguf;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.sparkquant.testing.TestPython;

/**
 * The real llama.cpp (npm build 3.22.1's libraries, tools compiled by python/gguf_llama.py): skips the calling test
 * when the libraries, the matching source, g++ or python are missing.
 */
public final class LlamaCpp {
    private static String unavailable;
    private static LlamaCpp instance;

    private final Path python;
    private final Path tmp;

    private LlamaCpp(Path python, Path tmp) {
        this.python = python;
        this.tmp = tmp;
    }

    /** The tools when they can be built here, else empty (for a test that checks more than llama.cpp). */
    public static synchronized java.util.Optional<LlamaCpp> available() {
        if (unavailable != null) {
            return java.util.Optional.empty();
        }
        try {
            return java.util.Optional.of(require());
        } catch (org.opentest4j.TestAbortedException e) {
            return java.util.Optional.empty();
        }
    }

    static synchronized LlamaCpp require() {
        assumeTrue(unavailable == null, unavailable);
        if (instance == null) {
            Path python = TestPython.require();
            TestPython.Result r = TestPython.run(python, List.of("python/gguf_llama.py", "build"), 600);
            if (r.exitCode() != 0) {
                unavailable = "llama.cpp tools unavailable: " + r.stderr().strip();
                assumeTrue(false, unavailable);
            }
            try {
                instance = new LlamaCpp(python, Files.createTempDirectory("llamacpp"));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        return instance;
    }

    /** Runs a tool; fails the test on a non-zero exit. */
    String run(String tool, String... args) {
        List<String> a = new ArrayList<>(List.of("python/gguf_llama.py", "run", tool));
        a.addAll(List.of(args));
        return TestPython.check(python, a, 900);
    }

    TestPython.Result tryRun(String tool, String... args) {
        List<String> a = new ArrayList<>(List.of("python/gguf_llama.py", "run", tool));
        a.addAll(List.of(args));
        return TestPython.run(python, a, 900);
    }

    /** Token ids of a text (no BOS, no special-token parsing). */
    int[] tokenize(Path gguf, String text) {
        try {
            Path in = Files.createTempFile(tmp, "text", ".txt");
            Path out = Files.createTempFile(tmp, "ids", ".bin");
            Files.writeString(in, text, StandardCharsets.UTF_8);
            run("llama_harness", "tokenize", abs(gguf), abs(in), abs(out));
            return ints(Files.readAllBytes(out));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Logits [ids.length × vocab] of one sequence. */
    public float[] logits(Path gguf, int[] ids) {
        try {
            Path in = writeIds(ids);
            Path out = Files.createTempFile(tmp, "logits", ".f32");
            run("llama_harness", "logits", abs(gguf), abs(in), abs(out));
            byte[] b = Files.readAllBytes(out);
            float[] f = new float[b.length / 4];
            ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
            return f;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Per window of {@code seq} tokens: the summed next-token NLL (seq - 1 predictions). */
    double[] nll(Path gguf, int[] ids, int seq) {
        try {
            Path in = writeIds(ids);
            Path out = Files.createTempFile(tmp, "nll", ".txt");
            run("llama_harness", "nll", abs(gguf), abs(in), Integer.toString(seq), abs(out));
            return Files.readAllLines(out).stream().mapToDouble(l -> Double.parseDouble(l.split(" ")[1])).toArray();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** "key value" lines of the harness's meta mode. */
    String meta(Path gguf) {
        return run("llama_harness", "meta", abs(gguf));
    }

    private Path writeIds(int[] ids) throws IOException {
        Path in = Files.createTempFile(tmp, "ids", ".bin");
        ByteBuffer b = ByteBuffer.allocate(4 * ids.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(ids);
        Files.write(in, b.array());
        return in;
    }

    static int[] ints(byte[] b) {
        int[] ids = new int[b.length / 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().get(ids);
        return ids;
    }

    static String abs(Path p) {
        return p.toAbsolutePath().toString();
    }
}
