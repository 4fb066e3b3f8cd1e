package org.sparkquant.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;

/**
 * Damaged files, many of them: valid files are mutated (bit flips, byte changes, truncation, extension, splices,
 * insertions, deletions; and edits of the header JSON text), and every case must either open and read all its
 * tensors (a mutation of the data section is still a valid file) or fail with a {@link SparkQuantException} naming the
 * file. Never another exception, never a hang: each case runs with a time bound. Seeded, so a failure reproduces.
 */
class SafetensorsMutationTest {
    private static final long CASE_TIMEOUT_MS = 5_000;
    private static final Storage STORAGE = Storage.local();
    private static ExecutorService executor;
    private static List<byte[]> seeds;

    @TempDir
    static Path dir;

    private enum Outcome { OPENED, REJECTED }

    @BeforeAll
    static void setUp() {
        executor = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "mutation-case");
            t.setDaemon(true);
            return t;
        });
        seeds = validFiles();
    }

    @AfterAll
    static void tearDown() {
        executor.shutdownNow();
    }

    /** Small valid files covering every dtype, 2-D tensors for row reads, 0-d and empty tensors, metadata. */
    static List<byte[]> validFiles() {
        Random r = new Random(7);
        List<byte[]> files = new ArrayList<>();
        List<TensorSpec> all = new ArrayList<>();
        for (DType d : DType.values()) {
            all.add(new TensorSpec("t." + d.name().toLowerCase(), d, new long[] {2, 3}));
        }
        files.add(file(all, Map.of("format", "pt"), r));
        files.add(file(List.of(
                new TensorSpec("model.layers.0.self_attn.q_proj.weight", DType.BF16, new long[] {4, 6}),
                new TensorSpec("model.layers.0.mlp.up_proj.weight", DType.F16, new long[] {5, 3}),
                new TensorSpec("model.norm.weight", DType.F32, new long[] {6})), Map.of(), r));
        files.add(file(List.of(
                new TensorSpec("scalar", DType.F64, new long[] {}),
                new TensorSpec("empty", DType.F32, new long[] {0, 7}),
                new TensorSpec("flag", DType.BOOL, new long[] {1}),
                new TensorSpec("empty.i8", DType.I8, new long[] {3, 0})), Map.of("a", "b", "c", ""), r));
        files.add(file(List.of(new TensorSpec("w", DType.F32, new long[] {8, 4})), null, r));
        files.add(file(List.of(), Map.of("format", "pt", "total", "0"), r));
        return files;
    }

    private static byte[] file(List<TensorSpec> specs, Map<String, String> metadata, Random r) {
        Map<String, byte[]> data = new LinkedHashMap<>();
        for (TensorSpec s : specs) {
            byte[] b = new byte[(int) s.byteSize()];
            r.nextBytes(b);
            data.put(s.name(), b);
        }
        return SafetensorsBytes.written(specs, data, metadata);
    }

    @Test
    void randomByteMutations() throws Exception {
        Random random = new Random(20261123L);
        int[] counts = new int[2];
        for (int i = 0; i < 1600; i++) {
            int s = random.nextInt(seeds.size());
            byte[] original = seeds.get(s);
            StringBuilder what = new StringBuilder("case " + i + " seed " + s + ": ");
            byte[] mutated = mutateBytes(original, random, what);
            counts[check(mutated, what.toString(), i % 16 == 0).ordinal()]++;
        }
        System.out.println("byte mutations: opened " + counts[0] + ", rejected " + counts[1]);
        // both outcomes must be common, or the mutations test nothing
        assertTrue(counts[Outcome.OPENED.ordinal()] > 100, Arrays.toString(counts));
        assertTrue(counts[Outcome.REJECTED.ordinal()] > 600, Arrays.toString(counts));
    }

    @Test
    void headerTextMutations() throws Exception {
        Random random = new Random(42L);
        int[] counts = new int[2];
        for (int i = 0; i < 1200; i++) {
            int s = random.nextInt(seeds.size());
            byte[] original = seeds.get(s);
            StringBuilder what = new StringBuilder("header case " + i + " seed " + s + ": ");
            byte[] mutated = mutateHeader(original, random, what);
            counts[check(mutated, what.toString(), i % 16 == 0).ordinal()]++;
        }
        System.out.println("header mutations: opened " + counts[0] + ", rejected " + counts[1]);
        assertTrue(counts[Outcome.OPENED.ordinal()] > 20, Arrays.toString(counts));
        assertTrue(counts[Outcome.REJECTED.ordinal()] > 800, Arrays.toString(counts));
    }

    @Test
    void unmutatedFilesOpen() throws Exception {
        for (int i = 0; i < seeds.size(); i++) {
            assertEquals(Outcome.OPENED, check(seeds.get(i), "seed " + i, true));
        }
    }

    // ---- the check ----

    private Outcome check(byte[] bytes, String what, boolean throughStorage) throws Exception {
        String name;
        RandomAccessInput input;
        if (throughStorage) {
            Path p = dir.resolve("case.safetensors");
            Files.write(p, bytes);
            name = p.toString();
            input = STORAGE.open(name);
        } else {
            name = "case.safetensors";
            input = SafetensorsBytes.input(name, bytes);
        }
        Future<Outcome> future = executor.submit(() -> openAndReadAll(input, bytes.length));
        try {
            return future.get(CASE_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            future.cancel(true);
            return fail(what + " did not finish within " + CASE_TIMEOUT_MS + " ms");
        } catch (java.util.concurrent.ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof SparkQuantException sq) {
                String m = sq.getMessage();
                assertTrue(m != null && m.startsWith(name) && !m.contains("\n"),
                        what + " message should be one line naming the file: " + m);
                assertEquals(SparkQuantException.Kind.BAD_INPUT, sq.kind(), what + m);
                return Outcome.REJECTED;
            }
            throw new AssertionError(what + " threw " + cause, cause);
        } finally {
            input.close();
        }
    }

    private static Outcome openAndReadAll(RandomAccessInput input, long length) {
        SafetensorsFile f = SafetensorsFile.open(input);
        long covered = 0;
        for (TensorInfo t : f.tensors().values()) {
            byte[] raw = f.readRaw(t.name());
            assertEquals(t.byteSize(), raw.length);
            assertEquals(t.elements() * t.dtype().size(), t.byteSize(), t.name());
            covered += t.byteSize();
            if (t.dtype().isFloating()) {
                assertEquals(t.elements(), f.readFloats(t.name()).length);
                if (t.rank() == 2) {
                    long rows = t.dim(0);
                    assertEquals((rows - rows / 2) * t.dim(1), f.readRows(t.name(), rows / 2, rows).length);
                }
            }
        }
        // an opened file's tensors tile its data section exactly: no overlap, no gap, nothing left over
        assertEquals(length - f.dataStart(), covered);
        List<TensorInfo> sorted = new ArrayList<>(f.tensors().values());
        sorted.sort(java.util.Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        long next = f.dataStart();
        for (TensorInfo t : sorted) {
            assertEquals(next, t.begin(), t.name() + " starts where the previous tensor ends");
            next = t.end();
        }
        assertEquals(length, next);
        return Outcome.OPENED;
    }

    // ---- byte mutations ----

    private static byte[] mutateBytes(byte[] original, Random r, StringBuilder what) {
        byte[] b = original.clone();
        int headerEnd = (int) Math.min(b.length, 8 + ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong());
        // half of the positions fall in the length prefix and header, where mutations matter most
        java.util.function.IntSupplier pos = () -> r.nextBoolean() || headerEnd >= b.length
                ? r.nextInt(headerEnd) : headerEnd + r.nextInt(b.length - headerEnd);
        switch (r.nextInt(10)) {
            case 0 -> {
                int flips = 1 + r.nextInt(3);
                what.append("flip ").append(flips).append(" bits at");
                for (int k = 0; k < flips; k++) {
                    int p = pos.getAsInt();
                    b[p] ^= (byte) (1 << r.nextInt(8));
                    what.append(' ').append(p);
                }
                return b;
            }
            case 1 -> {
                int p = pos.getAsInt();
                b[p] = (byte) r.nextInt(256);
                what.append("set byte ").append(p).append(" to ").append(b[p] & 0xff);
                return b;
            }
            case 2 -> {
                int p = r.nextInt(8);
                b[p] = (byte) r.nextInt(256);
                what.append("set length byte ").append(p).append(" to ").append(b[p] & 0xff);
                return b;
            }
            case 3 -> {
                int len = r.nextInt(b.length);
                what.append("truncate to ").append(len);
                return Arrays.copyOf(b, len);
            }
            case 4 -> {
                int extra = 1 + r.nextInt(64);
                byte[] e = Arrays.copyOf(b, b.length + extra);
                if (r.nextBoolean()) {
                    for (int k = b.length; k < e.length; k++) {
                        e[k] = (byte) r.nextInt(256);
                    }
                }
                what.append("extend by ").append(extra);
                return e;
            }
            case 5 -> {
                byte[] other = seeds.get(r.nextInt(seeds.size()));
                int from = r.nextInt(other.length);
                int len = 1 + r.nextInt(Math.min(64, other.length - from));
                int to = pos.getAsInt();
                len = Math.min(len, b.length - to);
                System.arraycopy(other, from, b, to, len);
                what.append("splice ").append(len).append(" bytes from another file at ").append(to);
                return b;
            }
            case 6 -> {
                int p = pos.getAsInt();
                int len = 1 + r.nextInt(16);
                byte[] ins = new byte[len];
                r.nextBytes(ins);
                what.append("insert ").append(len).append(" random bytes at ").append(p);
                return insert(b, p, ins);
            }
            case 7 -> {
                int p = pos.getAsInt();
                int len = 1 + r.nextInt(Math.min(16, b.length - p));
                what.append("delete ").append(len).append(" bytes at ").append(p);
                return delete(b, p, len);
            }
            case 8 -> {
                int p = pos.getAsInt();
                int len = 1 + r.nextInt(Math.min(32, b.length - p));
                what.append("duplicate ").append(len).append(" bytes at ").append(p);
                return insert(b, p + len, Arrays.copyOfRange(b, p, p + len));
            }
            default -> {
                // a plausible but wrong length prefix: off by a little
                long declared = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong();
                long delta = r.nextInt(17) - 8;
                ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putLong(0, declared + delta);
                what.append("header length ").append(delta > 0 ? "+" : "").append(delta);
                return b;
            }
        }
    }

    private static byte[] insert(byte[] b, int at, byte[] ins) {
        byte[] out = new byte[b.length + ins.length];
        System.arraycopy(b, 0, out, 0, at);
        System.arraycopy(ins, 0, out, at, ins.length);
        System.arraycopy(b, at, out, at + ins.length, b.length - at);
        return out;
    }

    private static byte[] delete(byte[] b, int at, int len) {
        byte[] out = new byte[b.length - len];
        System.arraycopy(b, 0, out, 0, at);
        System.arraycopy(b, at + len, out, at, b.length - at - len);
        return out;
    }

    // ---- header text mutations ----

    private static final String[] NUMBERS = {
        "99999999999999999999999999", "-1", "1e400", "18446744073709551616", "9223372036854775807",
        "9223372036854775808", "-9223372036854775808", "-0", "1.5", "0.0", "1e2", "2147483648", "4294967296",
        "1" + "0".repeat(1200), "NaN", "Infinity", "0x10", "007", "+4", "[]", "{}", "null", "true", "\"4\""};
    private static final String[] STRINGS = {
        "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "f32", "", "__metadata__",
        "dtype", "shape", "data_offsets", "\\u0000", "\\ud800", "é"};

    private static byte[] mutateHeader(byte[] original, Random r, StringBuilder what) {
        ByteBuffer in = ByteBuffer.wrap(original).order(ByteOrder.LITTLE_ENDIAN);
        int headerLength = (int) in.getLong();
        String header = new String(original, 8, headerLength, StandardCharsets.UTF_8);
        byte[] data = Arrays.copyOfRange(original, 8 + headerLength, original.length);
        String h = mutateText(header.stripTrailing(), r, what);
        byte[] hb = h.getBytes(StandardCharsets.UTF_8);
        long declared = hb.length;
        if (r.nextInt(10) == 0) {
            declared = headerLength; // keep the old prefix: usually wrong now
            what.append(" (old length prefix)");
        }
        ByteBuffer out = ByteBuffer.allocate(8 + hb.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        out.putLong(declared).put(hb).put(data);
        return out.array();
    }

    private static String mutateText(String h, Random r, StringBuilder what) {
        switch (r.nextInt(9)) {
            case 0 -> {
                int p = find(h, r, Character::isDigit);
                if (p < 0) {
                    break;
                }
                char c = (char) ('0' + r.nextInt(10));
                what.append("digit at ").append(p).append(" -> ").append(c);
                return h.substring(0, p) + c + h.substring(p + 1);
            }
            case 1 -> {
                int p = find(h, r, c -> "[]{}".indexOf(c) >= 0);
                if (p < 0) {
                    break;
                }
                what.append("remove bracket at ").append(p);
                return h.substring(0, p) + h.substring(p + 1);
            }
            case 2 -> {
                int p = find(h, r, c -> "\":,".indexOf(c) >= 0);
                if (p < 0) {
                    break;
                }
                what.append("remove punctuation at ").append(p);
                return h.substring(0, p) + h.substring(p + 1);
            }
            case 3 -> {
                // replace a whole number with a strange one
                int p = find(h, r, Character::isDigit);
                if (p < 0) {
                    break;
                }
                int start = p;
                int end = p;
                while (start > 0 && Character.isDigit(h.charAt(start - 1))) {
                    start--;
                }
                while (end < h.length() && Character.isDigit(h.charAt(end))) {
                    end++;
                }
                String n = NUMBERS[r.nextInt(NUMBERS.length)];
                what.append("number at ").append(start).append(" -> ").append(n.length() > 30 ? "1e1200 digits" : n);
                return h.substring(0, start) + n + h.substring(end);
            }
            case 4 -> {
                // replace the content of a string
                int p = find(h, r, c -> c == '"');
                int q = h.indexOf('"', p + 1);
                if (q < 0) {
                    break;
                }
                String s = STRINGS[r.nextInt(STRINGS.length)];
                what.append("string at ").append(p).append(" -> ").append(s);
                return h.substring(0, p + 1) + s + h.substring(q);
            }
            case 5 -> {
                // duplicate an object member (a tensor entry or a field)
                int p = find(h, r, c -> c == '{');
                int q = h.indexOf('}', p);
                int first = h.indexOf('"', p);
                if (p < 0 || q < 0 || first < 0 || first > q) {
                    break;
                }
                int colon = h.indexOf(',', first);
                if (colon < 0 || colon > q) {
                    colon = q;
                }
                String member = h.substring(first, colon);
                what.append("duplicate member ").append(member.length() > 20 ? member.substring(0, 20) : member);
                return h.substring(0, p + 1) + member + "," + h.substring(p + 1);
            }
            case 6 -> {
                int p = r.nextInt(h.length() - 1);
                what.append("swap at ").append(p);
                return h.substring(0, p) + h.charAt(p + 1) + h.charAt(p) + h.substring(p + 2);
            }
            case 7 -> {
                int p = r.nextInt(h.length() + 1);
                String s = switch (r.nextInt(6)) {
                    case 0 -> "\u0000";
                    case 1 -> "\t";
                    case 2 -> "\u00e9";
                    case 3 -> "\ud83d\ude00";
                    case 4 -> "[".repeat(100);
                    default -> ",";
                };
                what.append("insert ").append(s.length()).append(" chars at ").append(p);
                return h.substring(0, p) + s + h.substring(p);
            }
            default -> {
                // offsets shifted together: still tiling but past the end, or overlapping
                int p = h.indexOf("data_offsets");
                if (p < 0) {
                    break;
                }
                int open = h.indexOf('[', p);
                int close = h.indexOf(']', open);
                String[] parts = h.substring(open + 1, close).split(",");
                long shift = r.nextInt(9) - 4;
                String shifted = (Long.parseLong(parts[0].trim()) + shift) + "," + (Long.parseLong(parts[1].trim()) + shift);
                what.append("shift offsets by ").append(shift);
                return h.substring(0, open + 1) + shifted + h.substring(close);
            }
        }
        what.append("truncate header text");
        return h.substring(0, r.nextInt(h.length()));
    }

    /** A random index of a char matching the predicate, or -1; searches from a random start, wrapping around. */
    private static int find(String s, Random r, java.util.function.IntPredicate p) {
        int start = r.nextInt(s.length());
        for (int k = 0; k < s.length(); k++) {
            int i = (start + k) % s.length();
            if (p.test(s.charAt(i))) {
                return i;
            }
        }
        return -1;
    }
}
