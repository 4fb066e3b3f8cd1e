package org.sparkquant.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.io.DType;
import org.sparkquant.io.OutputManifest;
import org.sparkquant.io.Storage;
import org.sparkquant.model.SyntheticModel;
import org.sparkquant.testing.TestText;

/**
 * The error contract under seeded random combinations of quantize options, job files and damaged inputs: every case
 * exits 0 or 2 (never 1), prints no stack trace, exactly one error line when it fails, never leaves a {@code _SUCCESS}
 * (or a GGUF file) over a wrong output nor a lease behind, never changes a finished output it fails to replace, and
 * never writes an input.
 *
 * <p>Cases run the CLI in-process. Most carry a fault that is refused before Spark starts; every
 * {@link #FULL_EVERY}th case may instead be clean or carry a fault found only on Spark, so that the runs that start
 * Spark stay bounded ({@code CASES / FULL_EVERY} of them). A failing case prints the seed, its index and argv; run it
 * alone with {@code -Dsparkquant.fuzz.seed=S -Dsparkquant.fuzz.only=I}.
 */
class CliFuzzTest {
    static final long SEED = Long.getLong("sparkquant.fuzz.seed", 20261207L);
    static final int CASES = Integer.getInteger("sparkquant.fuzz.cases", 1000);
    static final int FULL_EVERY = Integer.getInteger("sparkquant.fuzz.full-every", 50);
    static final Integer ONLY = Integer.getInteger("sparkquant.fuzz.only");

    @TempDir
    static Path tmp;
    static Path inputs;
    static Path model;
    static Path calib;
    static Path finishedCheckpoint;
    static Path finishedGguf;
    static final Map<String, Path> damagedModels = new LinkedHashMap<>();
    static final Map<String, Path> files = new LinkedHashMap<>();

    @BeforeAll
    static void setUp() throws Exception {
        inputs = tmp.resolve("inputs");
        model = inputs.resolve("model");
        SyntheticModel.write(Storage.local(), model.toString(), SyntheticModel.Preset.TINY, 1, DType.BF16, 5,
                1L << 30);
        calib = inputs.resolve("calib.txt");
        Files.writeString(calib, TestText.sentences(3, 80, "north", "south", "river", "stone", "light", "paper"));
        Path shard = shard(model);

        damage("truncated-shard", (dir, s) -> setLength(s, Files.size(s) / 2));
        damage("empty-shard", (dir, s) -> setLength(s, 0));
        damage("huge-header-length", (dir, s) -> overwrite(s, 0, new byte[] {-1, -1, -1, -1, -1, -1, -1, 127}));
        damage("garbled-header", (dir, s) -> overwrite(s, 9, "#\u0000{]".getBytes(StandardCharsets.ISO_8859_1)));
        damage("header-offsets", (dir, s) -> {
            String text = new String(Files.readAllBytes(s), 0, 4096, StandardCharsets.ISO_8859_1);
            int at = text.indexOf("\"data_offsets\":[") + "\"data_offsets\":[".length();
            overwrite(s, at, "9".getBytes(StandardCharsets.ISO_8859_1));
        });
        damage("no-config", (dir, s) -> Files.delete(dir.resolve("config.json")));
        damage("config-not-json", (dir, s) -> Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"ll"));
        damage("config-empty", (dir, s) -> Files.writeString(dir.resolve("config.json"), ""));
        damage("config-array", (dir, s) -> Files.writeString(dir.resolve("config.json"), "[1, 2]"));
        config("hidden-negative", c -> c.put("hidden_size", -128));
        config("hidden-text", c -> c.put("hidden_size", "wide"));
        config("hidden-huge", c -> c.put("hidden_size", 1L << 40));
        config("heads-zero", c -> c.put("num_attention_heads", 0));
        config("heads-indivisible", c -> c.put("num_attention_heads", 3));
        config("kv-heads-indivisible", c -> c.put("num_key_value_heads", 3));
        config("model-type", c -> c.put("model_type", "gpt2"));
        config("no-model-type", c -> c.remove("model_type"));
        config("layers-more", c -> c.put("num_hidden_layers", 3));
        config("layers-zero", c -> c.put("num_hidden_layers", 0));
        config("vocab-mismatch", c -> c.put("vocab_size", 1000));
        config("intermediate-mismatch", c -> c.put("intermediate_size", 200));
        config("eps-negative", c -> c.put("rms_norm_eps", -1.0));
        config("rope-theta-zero", c -> c.put("rope_theta", 0.0));
        config("hidden-act", c -> c.put("hidden_act", "gelu"));
        damage("no-tokenizer", (dir, s) -> Files.delete(dir.resolve("tokenizer.json")));
        damage("tokenizer-garbage", (dir, s) -> Files.writeString(dir.resolve("tokenizer.json"), "{]"));
        damage("tokenizer-empty", (dir, s) -> Files.writeString(dir.resolve("tokenizer.json"), ""));
        damage("extra-directory", (dir, s) -> Files.createDirectories(dir.resolve("sub/dir")));

        Path data = inputs.resolve("data");
        Files.createDirectories(data.resolve("empty-dir"));
        files.put("empty", Files.writeString(data.resolve("empty.txt"), ""));
        files.put("blank", Files.writeString(data.resolve("blank.txt"), "\n\n  \n"));
        byte[] noise = new byte[30000];
        new Random(11).nextBytes(noise);
        files.put("binary", Files.write(data.resolve("noise.txt"), noise));
        files.put("jsonl", Files.writeString(data.resolve("calib.jsonl"),
                Files.readAllLines(calib).stream().map(l -> "{\"text\": \"" + l + "\"}\n").reduce("", String::concat)));
        files.put("jsonl-nofield", Files.writeString(data.resolve("nofield.jsonl"), "{\"body\": \"a b c\"}\n"
                .repeat(50)));
        files.put("jsonl-broken", Files.writeString(data.resolve("broken.jsonl"), "{\"text\": \"a b\n{{{\n"));
        StringBuilder tokens = new StringBuilder();
        Random tr = new Random(5);
        for (int i = 0; i < 8; i++) {
            tokens.append("{\"input_ids\": [");
            for (int j = 0; j < 16; j++) {
                tokens.append(j == 0 ? "" : ", ").append(tr.nextInt(500));
            }
            tokens.append("]}\n");
        }
        files.put("tokens", Files.writeString(data.resolve("tokens.jsonl"), tokens.toString()));
        files.put("tokens-out-of-vocab", Files.writeString(data.resolve("oov.jsonl"),
                "{\"input_ids\": [1, 2, 99999, 4]}\n"));
        files.put("tokens-negative", Files.writeString(data.resolve("negative.jsonl"),
                "{\"input_ids\": [1, -2, 3, 4]}\n"));
        files.put("tokens-not-ids", Files.writeString(data.resolve("notids.jsonl"), "{\"input_ids\": \"abc\"}\n"));
        files.put("a-file", Files.writeString(data.resolve("plain-file"), "not a directory\n"));

        Path jobs = inputs.resolve("jobs");
        Files.createDirectories(jobs);
        files.put("job-list", Files.writeString(jobs.resolve("list.yaml"), "- bits\n- 4\n"));
        files.put("job-invalid", Files.writeString(jobs.resolve("invalid.yaml"), "bits: [4\n  group-size: :\n"));
        files.put("job-mapping", Files.writeString(jobs.resolve("mapping.yaml"), "bits:\n  value: 4\n"));
        files.put("job-dashes", Files.writeString(jobs.resolve("dashes.yaml"), "--bits: 4\n"));
        files.put("job-unknown", Files.writeString(jobs.resolve("unknown.yaml"), "bitz: 4\n"));
        files.put("job-bad-bits", Files.writeString(jobs.resolve("badbits.properties"), "bits=5\n"));
        files.put("job-binary", Files.write(jobs.resolve("binary.yaml"), noise));
        files.put("job-nested", Files.writeString(jobs.resolve("nested.yaml"), "config: other.yaml\n"));

        // finished outputs that cases try to replace
        finishedCheckpoint = tmp.resolve("finished/checkpoint");
        finishedGguf = tmp.resolve("finished/model.gguf");
        CliRun a = CliRun.of(base(finishedCheckpoint.toString(), "--method", "rtn"));
        assertEquals(0, a.exitCode(), a.err());
        CliRun b = CliRun.of(base(finishedGguf.toString(), "--gguf-type", "Q8_0"));
        assertEquals(0, b.exitCode(), b.err());
        assertTrue(Files.exists(shard));
    }

    private static String[] base(String output, String... extra) {
        List<String> args = new ArrayList<>(List.of("quantize", "--model", model.toString(), "--output", output,
                "--calibration", calib.toString(), "--samples", "4", "--seq-len", "16", "--group-size", "32",
                "--conf", "spark.master=local[1]", "--conf", "spark.ui.enabled=false"));
        args.addAll(List.of(extra));
        return args.toArray(String[]::new);
    }

    // ------------------------------------------------------------------ damaged inputs

    interface Damage {
        void apply(Path dir, Path shard) throws IOException;
    }

    private static void damage(String name, Damage d) throws IOException {
        Path dir = inputs.resolve("damaged/" + name);
        Files.createDirectories(dir);
        try (Stream<Path> list = Files.list(model)) {
            for (Path f : list.toList()) {
                Files.copy(f, dir.resolve(f.getFileName()));
            }
        }
        d.apply(dir, shard(dir));
        damagedModels.put(name, dir);
    }

    private static void config(String name, java.util.function.Consumer<ObjectNode> edit) throws IOException {
        damage("config-" + name, (dir, s) -> {
            ObjectNode c = (ObjectNode) new ObjectMapper().readTree(dir.resolve("config.json").toFile());
            edit.accept(c);
            Files.writeString(dir.resolve("config.json"), c.toPrettyString());
        });
    }

    private static Path shard(Path dir) throws IOException {
        try (Stream<Path> list = Files.list(dir)) {
            return list.filter(f -> f.toString().endsWith(".safetensors")).findFirst().orElseThrow();
        }
    }

    private static void setLength(Path file, long length) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(length);
        }
    }

    private static void overwrite(Path file, long at, byte[] bytes) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(at);
            f.write(bytes);
        }
    }

    // ------------------------------------------------------------------ cases

    /** What a case expects: a fault that must be refused, one that may be, or none (the run must succeed). */
    enum Expect { SUCCESS, MAY_FAIL, MUST_FAIL }

    /** A case under construction: options by name (null value = a flag), raw extra tokens, what it expects. */
    static final class Case {
        final int index;
        final Random random;
        String model = CliFuzzTest.model.toString();
        String output;
        final Map<String, String> options = new LinkedHashMap<>();
        final List<String> raw = new ArrayList<>();
        final List<String> faults = new ArrayList<>();
        Expect expect = Expect.SUCCESS;
        boolean gguf;
        boolean replacesFinished;
        Path outDir;
        Path jobFile;

        Case(int index, Random random) {
            this.index = index;
            this.random = random;
        }

        void fault(String name, boolean must) {
            faults.add(name);
            if (must) {
                expect = Expect.MUST_FAIL;
            } else if (expect == Expect.SUCCESS) {
                expect = Expect.MAY_FAIL;
            }
        }

        <T> T pick(List<T> values) {
            return values.get(random.nextInt(values.size()));
        }

        String[] argv() {
            List<List<String>> groups = new ArrayList<>();
            groups.add(List.of("--model", model));
            groups.add(List.of("--output", output));
            options.forEach((k, v) -> {
                if (v == null) {
                    groups.add(List.of(k));
                } else if (random.nextInt(5) == 0 && !v.isEmpty()) {
                    groups.add(List.of(k + "=" + v));
                } else {
                    groups.add(List.of(k, v));
                }
            });
            Collections.shuffle(groups, random);
            List<String> args = new ArrayList<>();
            args.add("quantize");
            groups.forEach(args::addAll);
            args.addAll(raw);
            return args.toArray(String[]::new);
        }
    }

    /** Valid variations of a run; none makes a run fail. */
    private static void vary(Case c) {
        Random r = c.random;
        if (c.gguf) {
            c.options.put("--gguf-type", c.pick(List.of("Q8_0", "Q4_0", "Q4_K_M", "Q2_K", "Q6_K", "F16")));
            if (r.nextInt(3) == 0) {
                c.options.put("--format", "gguf");
            }
            if (r.nextInt(4) == 0) {
                c.options.put("--importance", "hessian-diag");
            }
        } else {
            c.options.put("--bits", c.pick(List.of("2", "3", "4", "8")));
            c.options.put("--group-size", c.pick(List.of("32", "64", "128", "-1")));
            if (r.nextInt(3) == 0) {
                c.options.put("--asym", null);
            }
            if (r.nextInt(4) == 0) {
                c.options.put("--desc-act", null);
                if (r.nextBoolean() && !c.options.get("--group-size").equals("-1")) {
                    c.options.put("--static-groups", null);
                }
            }
            if (r.nextInt(5) == 0) {
                c.options.put("--max-shard-size", c.pick(List.of("1MiB", "100KB", "2GiB")));
            }
        }
        if (r.nextInt(4) == 0) {
            c.options.put("--method", "rtn");
            if (r.nextBoolean() && !c.options.containsKey("--importance")) {
                c.options.remove("--calibration");
            }
        }
        if (c.options.containsKey("--calibration") && r.nextInt(4) == 0) {
            String kind = c.pick(List.of("jsonl", "tokens"));
            c.options.put("--calibration", files.get(kind).toString());
            if (r.nextBoolean()) {
                c.options.put("--calibration-format", kind);
            }
        }
        if (r.nextInt(6) == 0) {
            c.options.put("--mse", null);
        }
        if (r.nextInt(6) == 0) {
            c.options.put("--precision", "fp64");
        }
        if (r.nextInt(6) == 0) {
            c.options.put("--no-true-sequential", null);
        }
        if (r.nextInt(5) == 0) {
            c.options.put("--seed", Integer.toString(r.nextInt(1000)));
        }
        if (r.nextInt(8) == 0) {
            c.options.put("--resume", null);
        }
        if (r.nextInt(8) == 0) {
            c.options.put("--lease-timeout", "30");
        }
        if (r.nextInt(8) == 0) {
            c.options.put("--damp", c.pick(List.of("0.05", "0.1")));
        }
    }

    /** A fault that is refused before Spark starts. */
    private static void earlyFault(Case c) {
        Random r = c.random;
        switch (r.nextInt(14)) {
            case 0 -> {
                String option = c.pick(List.of("--bits", "--group-size", "--samples", "--seq-len",
                        "--samples-per-partition", "--damp", "--lease-timeout", "--seed", "--max-shard-size"));
                Map<String, List<String>> bad = Map.of(
                        "--bits", List.of("0", "1", "5", "16", "-4", "four", "4.0", "99999999999", ""),
                        "--group-size", List.of("0", "7", "-2", "24", "x", "2147483648"),
                        "--samples", List.of("0", "-1", "x", "1e3", "99999999999", "2000000000"),
                        "--seq-len", List.of("0", "1", "-5", "x", "2147483647"),
                        "--samples-per-partition", List.of("0", "-2", "x"),
                        "--damp", List.of("-0.1", "NaN", "Infinity", "x", "0", "1.5", "-Infinity"),
                        "--lease-timeout", List.of("0", "-1", "x", "9223372036854775807"),
                        "--seed", List.of("x", "1.5", "99999999999999999999"),
                        "--max-shard-size", List.of("0", "-1", "1XB", "", "abc", "0.1B", "99999999999TiB"));
                String value = c.pick(bad.get(option));
                if (option.equals("--seq-len") && value.equals("2147483647")) {
                    c.options.put("--allow-beyond-context", null);
                }
                if (option.equals("--samples") && value.equals("2000000000")) {
                    c.options.put("--seq-len", "4096");
                    c.options.put("--allow-beyond-context", null);
                }
                if (option.equals("--max-shard-size") && c.gguf) {
                    c.gguf = false; // a checkpoint's option
                    c.output = c.outDir.resolve("out").toString();
                    c.options.remove("--gguf-type");
                    c.options.remove("--format");
                    c.options.remove("--importance");
                }
                c.options.put(option, value);
                c.fault(option + " " + value, true);
            }
            case 1 -> {
                String option = c.pick(List.of("--format", "--method", "--importance", "--precision",
                        "--calibration-format", "--unpackable", "--gguf-type"));
                String value = c.pick(List.of("xyz", "", "GPTQ ", "q4_k_x", "fp16", "none,rtn"));
                if (option.equals("--calibration-format") && !c.options.containsKey("--calibration")) {
                    c.options.put("--calibration", calib.toString());
                    c.options.remove("--method");
                }
                c.options.put(option, value);
                c.fault(option + " '" + value + "'", true);
            }
            case 2 -> {
                switch (r.nextInt(6)) {
                    case 0 -> c.raw.addAll(List.of("--sym", "--asym"));
                    case 1 -> {
                        c.options.put("--format", "gguf");
                        c.options.put("--desc-act", null);
                    }
                    case 2 -> {
                        c.options.put("--format", "gptq");
                        c.options.remove("--gguf-type");
                        c.options.put("--importance", "hessian-diag");
                    }
                    case 3 -> {
                        c.options.put("--format", "gguf");
                        c.options.put("--method", "rtn");
                        c.options.remove("--calibration");
                        if (r.nextBoolean()) {
                            c.options.put("--importance", "hessian-diag");
                        } else {
                            c.options.put("--export-imatrix", c.outDir.resolve("imatrix.gguf").toString());
                        }
                    }
                    case 4 -> {
                        c.options.put("--method", "gptq");
                        c.options.remove("--calibration");
                    }
                    default -> {
                        c.options.put("--static-groups", null);
                        c.options.put("--group-size", "-1");
                        c.options.remove("--format");
                        c.options.remove("--gguf-type");
                        c.options.remove("--importance");
                        c.gguf = false;
                        c.output = c.outDir.resolve("out").toString();
                    }
                }
                c.fault("conflicting options " + c.options.keySet() + c.raw, true);
            }
            case 3 -> {
                switch (r.nextInt(6)) {
                    case 0 -> c.raw.add("--no-such-option");
                    case 1 -> c.raw.add("stray-argument");
                    case 2 -> c.raw.add(c.pick(List.of("--bits", "--output", "--model", "--conf", "--config")));
                    case 3 -> c.raw.addAll(List.of("--conf", c.pick(List.of("novalue", "=x", "", "spark.master"))));
                    case 4 -> c.raw.add("-x");
                    default -> c.raw.add("--bits=");
                }
                c.fault("usage " + c.raw, true);
            }
            case 4 -> {
                c.model = c.pick(List.of("", " ", "foo://host/model", "s3a://AKIAFUZZKEY:fuzzSecret99@bucket/model",
                        "bad\u0000path", tmp.resolve("no-such-model").toString(), files.get("a-file").toString(),
                        "file:///no/such/model", "hdfs:", ":::", "s3a:///nobucket"));
                c.fault("--model " + c.model, true);
            }
            case 5 -> {
                c.output = c.pick(List.of("", "foo://host/out", "s3a://AKIAFUZZKEY:fuzzSecret99@bucket/out",
                        "bad\u0000path", model.toString(), model.resolve("q").toString(), inputs.toString(),
                        tmp.toString(), calib.toString(), model + "/../model/.", inputs + "/./model/sub/../x",
                        files.get("a-file").toString() + "/out", "/", "file:///"));
                c.fault("--output " + c.output, true);
            }
            case 6, 7, 8 -> {
                List<String> names = new ArrayList<>(damagedModels.keySet());
                // faults a run without a tokenizer or calibration does not see
                names.removeIf(n -> n.startsWith("no-tokenizer") || n.startsWith("tokenizer-")
                        || n.equals("extra-directory") || n.equals("config-eps-negative")
                        || n.equals("config-rope-theta-zero"));
                String name = c.pick(names);
                c.model = damagedModels.get(name).toString();
                c.fault("model " + name, true);
            }
            case 9 -> {
                String name = c.pick(List.of("no-tokenizer", "tokenizer-garbage", "tokenizer-empty"));
                c.model = damagedModels.get(name).toString();
                c.options.put("--calibration", calib.toString());
                c.options.remove("--calibration-format");
                if ("rtn".equals(c.options.get("--method")) && !c.gguf) {
                    c.options.remove("--method");
                }
                c.fault("model " + name, true);
            }
            case 10 -> {
                c.options.put("--calibration", c.pick(List.of(tmp.resolve("no-such-calib.txt").toString(),
                        "foo://x/calib.txt", "", "s3a://AKIAFUZZKEY:fuzzSecret99@bucket/calib")));
                c.options.remove("--method");
                c.fault("--calibration " + c.options.get("--calibration"), true);
            }
            case 11 -> {
                String job = c.pick(List.of("job-list", "job-invalid", "job-mapping", "job-dashes", "job-unknown",
                        "job-bad-bits", "job-binary", "job-nested", "missing"));
                String file = job.equals("missing") ? tmp.resolve("no-such-job.yaml").toString()
                        : files.get(job).toString();
                if (job.equals("job-bad-bits")) {
                    c.options.remove("--bits"); // else the command line's --bits wins
                }
                c.raw.addAll(List.of("--config", file));
                c.fault("--config " + job, true);
            }
            case 12 -> {
                c.options.put("--seq-len", "64");
                c.model = damagedModels.get("config-layers-more").toString();
                c.fault("model config-layers-more", true);
            }
            default -> {
                c.options.put("--lease-timeout", c.pick(List.of("0", "-3")));
                c.fault("--lease-timeout " + c.options.get("--lease-timeout"), true);
            }
        }
    }

    /** A fault seen on Spark, or not a fault at all; at most one per full case. */
    private static void lateFault(Case c) {
        Random r = c.random;
        if (c.gguf) {
            c.options.put("--gguf-type", "Q8_0"); // F16 quantizes nothing, so its run reads no calibration
        }
        switch (r.nextInt(9)) {
            case 0 -> {
                String kind = c.pick(List.of("empty", "blank", "jsonl-broken", "tokens-out-of-vocab",
                        "tokens-negative", "tokens-not-ids"));
                c.options.put("--calibration", files.get(kind).toString());
                c.options.remove("--method");
                c.options.remove("--calibration-format");
                c.fault("calibration " + kind, true);
            }
            case 1 -> {
                c.options.put("--calibration", files.get("jsonl-nofield").toString());
                c.options.put("--calibration-format", "jsonl");
                c.options.remove("--method");
                c.fault("calibration without the text field", true);
            }
            case 2 -> {
                c.options.put("--calibration", files.get("binary").toString());
                c.options.remove("--method");
                c.options.remove("--calibration-format");
                c.fault("binary calibration", false);
            }
            case 3 -> {
                c.raw.addAll(List.of("--conf", c.pick(List.of("spark.master=bogus://x", "spark.master=local[0]",
                        "spark.master=local[-1]", "spark.driver.maxResultSize=lots"))));
                c.fault("bad Spark setting " + c.raw, true);
            }
            case 4 -> {
                // replaces a finished output: with --overwrite it succeeds, without it is refused
                c.replacesFinished = true;
                if (r.nextBoolean()) {
                    c.options.put("--overwrite", null);
                } else {
                    c.options.remove("--resume");
                    c.fault("finished output without --overwrite", true);
                }
            }
            case 5 -> {
                c.options.put("--seq-len", "64");
                c.model = damagedModels.get("config-eps-negative").toString();
                c.fault("model config-eps-negative", false);
            }
            case 6 -> {
                c.model = damagedModels.get("extra-directory").toString();
                c.fault("model with a subdirectory", false);
            }
            default -> {
                // clean
            }
        }
    }

    private static Case generate(int index) throws IOException {
        Random r = new Random(SEED * 1_000_003L + index);
        Case c = new Case(index, r);
        c.outDir = tmp.resolve("out/case-" + index);
        Files.createDirectories(c.outDir);
        c.gguf = r.nextInt(4) == 0;
        c.output = c.outDir.resolve(c.gguf ? "m.gguf" : "out").toString();
        c.options.put("--calibration", calib.toString());
        c.options.put("--samples", "4");
        c.options.put("--seq-len", "16");
        c.options.put("--group-size", "32");
        c.raw.addAll(List.of("--conf", "spark.master=local[1]", "--conf", "spark.ui.enabled=false"));
        vary(c);
        if (c.gguf) {
            c.options.remove("--group-size");
        }
        boolean full = index % FULL_EVERY == 0;
        if (full) {
            lateFault(c);
        } else {
            earlyFault(c);
            if (r.nextInt(4) == 0) {
                earlyFault(c);
            }
        }
        if (c.replacesFinished) {
            Path from = c.gguf ? finishedGguf : finishedCheckpoint;
            Path to = c.gguf ? c.outDir.resolve("m.gguf") : c.outDir.resolve("out");
            copy(from, to);
            if (c.gguf) {
                Files.copy(Path.of(from + ".sha256"), Path.of(to + ".sha256"));
            }
            c.output = to.toString();
        }
        if (r.nextInt(6) == 0) {
            moveToJobFile(c);
        }
        return c;
    }

    /** Puts some of the options into a job file (YAML or .properties); the command line still wins. */
    private static void moveToJobFile(Case c) throws IOException {
        boolean yaml = c.random.nextBoolean();
        StringBuilder text = new StringBuilder();
        List<String> moved = new ArrayList<>();
        for (Map.Entry<String, String> e : c.options.entrySet()) {
            if (c.random.nextBoolean() && !e.getKey().equals("--calibration")) {
                String key = e.getKey().substring(2);
                String value = e.getValue() == null ? "true" : e.getValue();
                if (yaml) {
                    text.append(key).append(": ").append(value.isEmpty() || value.startsWith("-")
                            || value.contains(":") || value.contains("#") ? "'" + value.replace("'", "''") + "'"
                            : value).append('\n');
                } else {
                    text.append(key).append('=').append(value.replace("\\", "\\\\")).append('\n');
                }
                moved.add(e.getKey());
            }
        }
        if (moved.isEmpty()) {
            return;
        }
        moved.forEach(c.options::remove);
        c.jobFile = Files.writeString(c.outDir.resolve(yaml ? "job.yaml" : "job.properties"), text);
        // outside the output directory, which a run may replace: move the file up beside it
        Path beside = c.outDir.resolveSibling("case-" + c.index + (yaml ? ".yaml" : ".properties"));
        Files.move(c.jobFile, beside);
        c.jobFile = beside;
        c.raw.addAll(0, List.of("--config", beside.toString()));
    }

    // ------------------------------------------------------------------ the test

    @Test
    void everyCaseExitsZeroOrTwoWithOneLineAndNeverASuccessOverAWrongOutput() throws Exception {
        Map<String, String> before = digests(inputs);
        Map<String, String> finishedBefore = digests(finishedCheckpoint.getParent());
        List<String> failures = new ArrayList<>();
        Map<Integer, Integer> exits = new TreeMap<>();
        int full = 0;
        long start = System.nanoTime();
        int from = ONLY != null ? ONLY : 0;
        int to = ONLY != null ? ONLY + 1 : CASES;
        for (int i = from; i < to && failures.size() < 20; i++) {
            Case c = generate(i);
            String[] argv = c.argv();
            Map<String, String> target = c.replacesFinished ? digests(c.outDir) : Map.of();
            long t0 = System.nanoTime();
            CliRun run;
            try {
                run = CliRun.of(argv);
            } catch (Throwable t) {
                failures.add(describe(c, argv, "threw " + t));
                continue;
            }
            if (i % FULL_EVERY == 0) {
                full++;
            }
            exits.merge(run.exitCode(), 1, Integer::sum);
            String problem = check(c, run, target);
            if (problem != null) {
                failures.add(describe(c, argv, problem + String.format(java.util.Locale.ROOT, " (%.1f s)",
                        (System.nanoTime() - t0) / 1e9) + "\n  stderr: " + run.err().strip().replace("\n",
                        "\n          ")));
            }
        }
        System.out.printf(java.util.Locale.ROOT, "fuzz: seed %d, %d cases (%d may start Spark), exits %s, %.1f s%n",
                SEED, to - from, full, exits, (System.nanoTime() - start) / 1e9);
        assertEquals(before, digests(inputs), "the inputs are unchanged");
        assertEquals(finishedBefore, digests(finishedCheckpoint.getParent()), "the finished outputs are unchanged");
        assertTrue(failures.isEmpty(), failures.size() + " failing case(s):\n" + String.join("\n", failures));
    }

    private static String describe(Case c, String[] argv, String problem) {
        List<String> quoted = new ArrayList<>();
        for (String a : argv) {
            quoted.add(a.isEmpty() || a.contains(" ") || a.contains("\u0000") ? "'" + a.replace("\u0000", "\\0") + "'"
                    : a);
        }
        return "case " + c.index + " (-Dsparkquant.fuzz.seed=" + SEED + " -Dsparkquant.fuzz.only=" + c.index + "), "
                + "faults " + c.faults + ", expected " + c.expect + ": " + problem + "\n  argv: "
                + String.join(" ", quoted);
    }

    /** The contract for one case; null when it holds. */
    private static String check(Case c, CliRun run, Map<String, String> targetBefore) throws Exception {
        int code = run.exitCode();
        String err = run.err();
        if (code != 0 && code != 2) {
            return "exit " + code;
        }
        if (err.contains("\tat ") || err.contains("internal error")) {
            return "stack trace or internal error on stderr";
        }
        if (c.expect == Expect.MUST_FAIL && code != 2) {
            return "exit " + code + ", expected 2";
        }
        if (c.expect == Expect.SUCCESS && code != 0) {
            return "exit " + code + ", expected 0";
        }
        long errors = err.lines().filter(l -> l.startsWith("sparkquant: error")).count();
        if (code == 2 && errors != 1) {
            return errors + " error lines";
        }
        if (code == 2 && err.lines().filter(l -> l.startsWith("sparkquant: error")).anyMatch(
                l -> l.contains("fuzzSecret99") || l.contains("AKIAFUZZKEY"))) {
            return "a credential was printed";
        }
        boolean early = c.index % FULL_EVERY != 0;
        if (code == 2 && early) {
            // refused before Spark: nothing else on stderr but warnings
            List<String> other = err.lines().filter(l -> !l.isBlank() && !l.startsWith("sparkquant: error")
                    && !l.startsWith("sparkquant: warning") && !l.startsWith("quantize: no --calibration")).toList();
            if (!other.isEmpty()) {
                return "more than the error line: " + other;
            }
        }
        Path out = Path.of(c.output.isBlank() || c.output.contains("\u0000") || c.output.contains(":")
                ? c.outDir.resolve("none").toString() : c.output);
        if (!out.normalize().startsWith(c.outDir)) {
            return null; // an output over an input: the inputs' digests are checked at the end
        }
        Storage local = Storage.local();
        if (code == 0) {
            List<String> problems = c.gguf ? OutputManifest.verifyFile(local, out.toString())
                    : OutputManifest.verify(local, out.toString());
            if (!problems.isEmpty()) {
                return "exit 0 but the output does not verify: " + problems;
            }
            if (!c.gguf) {
                JsonNode q = new ObjectMapper().readTree(out.resolve("config.json").toFile())
                        .path("quantization_config");
                String bits = c.options.getOrDefault("--bits", jobValue(c, "bits", "4"));
                if (q.path("bits").asInt() != Integer.parseInt(bits)) {
                    return "exit 0 but quantization_config.bits is " + q.path("bits") + ", asked " + bits;
                }
            }
        } else {
            if (c.replacesFinished) {
                if (!digests(c.outDir).equals(targetBefore)) {
                    return "a failed run changed the finished output it was to replace";
                }
            } else if (Files.exists(out.resolve(OutputManifest.FILE)) || (c.gguf && Files.exists(out))) {
                return "a failed run left a finished-looking output";
            } else if (early && Files.exists(out)) {
                return "a run refused before it started left " + out + " behind";
            }
        }
        try (Stream<Path> left = Files.walk(c.outDir)) {
            List<Path> leases = left.filter(p -> p.getFileName().toString().endsWith("lease.json")).toList();
            if (!leases.isEmpty()) {
                return "a lease was left behind: " + leases;
            }
        }
        return null;
    }

    /** A value the case's job file sets, or the default. */
    private static String jobValue(Case c, String key, String fallback) throws IOException {
        if (c.jobFile == null) {
            return fallback;
        }
        for (String line : Files.readAllLines(c.jobFile)) {
            String[] kv = line.split("[:=]", 2);
            if (kv.length == 2 && kv[0].trim().equals(key)) {
                return kv[1].trim().replace("'", "");
            }
        }
        return fallback;
    }

    private static void copy(Path from, Path to) throws IOException {
        try (Stream<Path> walk = Files.walk(from)) {
            for (Path p : walk.toList()) {
                Path t = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(t);
                } else {
                    Files.createDirectories(t.getParent());
                    Files.copy(p, t);
                }
            }
        }
    }

    /** Every file under dir (which may be absent) with its SHA-256. */
    static Map<String, String> digests(Path dir) throws Exception {
        Map<String, String> out = new TreeMap<>();
        if (!Files.exists(dir)) {
            return out;
        }
        try (Stream<Path> walk = Files.walk(dir)) {
            for (Path f : walk.filter(Files::isRegularFile).toList()) {
                out.put(dir.relativize(f).toString(), HexFormat.of().formatHex(
                        MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f))));
            }
        }
        return out;
    }
}
