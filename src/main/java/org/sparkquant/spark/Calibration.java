package org.sparkquant.spark;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;
import org.sparkquant.model.ModelConfig;
import org.sparkquant.tokenizer.TextTokenizer;
import scala.Tuple3;

/**
 * Calibration samples: token windows drawn from text, JSONL or Parquet documents tokenized on the executors, or
 * pre-tokenized JSONL ({@code {"input_ids": [...]}}, one sample per line, used exactly as given).
 *
 * <p>Text is a stream: documents (non-blank lines of text files, or the text field of JSONL/Parquet records) are
 * tokenized one by one without special tokens and concatenated in input order; {@code samples} windows of
 * {@code seqLen} tokens start at offsets drawn uniformly with {@code seed}. The stream does not depend on how Spark
 * splits the input, so the samples do not depend on the cluster.
 */
public final class Calibration {
    public enum Format { AUTO, TEXT, JSONL, PARQUET, TOKENS }

    private Calibration() {}

    /**
     * A run's calibration samples: the pre-tokenized sequences of a {@code tokens} file as given, or
     * {@code job.samples()} windows of {@code job.seqLen()} tokens drawn with {@code job.seed()} from the documents,
     * tokenized on the executors with the model's tokenizer (without special tokens: windows come from a stream of
     * documents, so no BOS policy applies).
     */
    public static List<int[]> samples(SparkSession spark, Storage storage, QuantizeJob job, ModelConfig config,
            Format requested, String textField, Progress progress) {
        String calibration = job.calibration();
        Format format = detect(storage, calibration, requested);
        if (format == Format.TOKENS) {
            List<int[]> tokens = readTokens(storage, calibration, job.samples(), config.vocabSize());
            if (tokens.size() < job.samples()) {
                progress.message("warning: " + calibration + " has " + tokens.size() + " samples, fewer than --samples "
                        + job.samples() + "; using " + tokens.size());
            }
            return tokens;
        }
        try (TextTokenizer tokenizer = TextTokenizer.load(storage, job.model(), false)) {
            tokenizer.checkCompatible(config);
        }
        progress.step(-1, "calibration · tokenizing " + calibration);
        return windows(documents(spark, calibration, format, textField), new TokenizerEncoder(storage, job.model()),
                job.samples(), job.seqLen(), job.seed(), calibration);
    }

    /** Tokenizes on executors with the model's tokenizer, opened once per JVM. */
    private record TokenizerEncoder(Storage storage, String model) implements TextEncoder {
        @Override
        public int[] encode(String text) {
            TextTokenizer t = ExecutorCache.model("tokenizer:" + model, () -> TextTokenizer.load(storage, model, false));
            return t.encodeWithoutSpecialTokens(text);
        }
    }

    public static Format parseFormat(String name) {
        try {
            return Format.valueOf(name.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw SparkQuantException.badInput("--calibration-format must be auto, text, jsonl, parquet or tokens, got '"
                    + name + "'");
        }
    }

    /** Resolves {@code auto} from the name and, for JSON lines, from the first record. */
    public static Format detect(Storage storage, String uri, Format format) {
        if (format != Format.AUTO) {
            return format;
        }
        String name = uri.toLowerCase(Locale.ROOT);
        if (name.endsWith(".parquet") || name.endsWith(".pq")) {
            return Format.PARQUET;
        }
        if (storage.isDirectory(uri)) {
            List<String> children = storage.list(uri);
            if (children.stream().anyMatch(c -> c.endsWith(".parquet"))) {
                return Format.PARQUET;
            }
            return Format.TEXT;
        }
        if (name.endsWith(".jsonl") || name.endsWith(".json") || name.endsWith(".ndjson")) {
            String first = firstLine(storage, uri);
            return first != null && first.contains("\"input_ids\"") ? Format.TOKENS : Format.JSONL;
        }
        return Format.TEXT;
    }

    private static String firstLine(Storage storage, String uri) {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(storage.openStream(uri),
                StandardCharsets.UTF_8))) {
            for (String line; (line = r.readLine()) != null; ) {
                if (!line.isBlank()) {
                    return line;
                }
            }
            return null;
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot read " + uri + ": " + e.getMessage());
        }
    }

    /** Pre-tokenized samples, one per non-blank line, exactly as given (at most {@code samples} of them). */
    public static List<int[]> readTokens(Storage storage, String uri, int samples, int vocabSize) {
        List<int[]> out = new ArrayList<>();
        ObjectMapper json = new ObjectMapper();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(storage.openStream(uri),
                StandardCharsets.UTF_8))) {
            int lineNo = 0;
            for (String line; (line = r.readLine()) != null && out.size() < samples; ) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                JsonNode ids;
                try {
                    ids = json.readTree(line).get("input_ids");
                } catch (IOException e) {
                    throw SparkQuantException.badInput(uri + ": line " + lineNo + " is not valid JSON");
                }
                if (ids == null || !ids.isArray() || ids.isEmpty()) {
                    throw SparkQuantException.badInput(uri + ": line " + lineNo + " has no input_ids array");
                }
                if (ids.size() > 0 && ids.get(0).isArray()) {
                    ids = ids.get(0); // [[...]] as written by tokenizers returning batches
                }
                int[] tokens = new int[ids.size()];
                for (int i = 0; i < tokens.length; i++) {
                    JsonNode t = ids.get(i);
                    if (!t.isIntegralNumber() || t.asLong() < 0 || t.asLong() >= vocabSize) {
                        throw SparkQuantException.badInput(uri + ": line " + lineNo + ": token " + t
                                + " is outside the model's vocabulary of " + vocabSize);
                    }
                    tokens[i] = t.intValue();
                }
                out.add(tokens);
            }
        } catch (IOException e) {
            throw SparkQuantException.badInput("cannot read " + uri + ": " + e.getMessage());
        }
        if (out.isEmpty()) {
            throw SparkQuantException.badInput(uri + ": no samples");
        }
        return out;
    }

    /** The documents of a text, JSONL or Parquet input, in input order. */
    public static JavaRDD<String> documents(SparkSession spark, String uri, Format format, String textField) {
        Dataset<Row> frame = switch (format) {
            case TEXT -> spark.read().text(uri);
            case JSONL -> selectText(spark.read().json(uri), uri, textField);
            case PARQUET -> selectText(spark.read().parquet(uri), uri, textField);
            default -> throw new IllegalArgumentException(format.toString());
        };
        return frame.toJavaRDD()
                .map(row -> row.isNullAt(0) ? "" : row.getString(0))
                .filter(text -> !text.isBlank());
    }

    private static Dataset<Row> selectText(Dataset<Row> frame, String uri, String field) {
        if (!List.of(frame.columns()).contains(field)) {
            throw SparkQuantException.badInput(uri + ": no field '" + field + "' (fields: "
                    + String.join(", ", frame.columns()) + "); choose one with --text-field");
        }
        if (!frame.schema().apply(field).dataType().equals(DataTypes.StringType)) {
            throw SparkQuantException.badInput(uri + ": field '" + field + "' is not text");
        }
        return frame.select(field);
    }

    /**
     * Draws {@code samples} windows of {@code seqLen} tokens from the concatenated token stream of the documents.
     * Only per-partition token counts and the chosen windows reach the driver.
     */
    public static List<int[]> windows(JavaRDD<String> documents, TextEncoder encoder, int samples, int seqLen,
            long seed, String source) {
        JavaRDD<int[]> tokenized = documents.map(encoder::encode).cache();
        try {
            List<Long> counts = tokenized.mapPartitions(it -> {
                long n = 0;
                while (it.hasNext()) {
                    n += it.next().length;
                }
                return List.of(n).iterator();
            }).collect();
            long total = counts.stream().mapToLong(Long::longValue).sum();
            if (total < seqLen) {
                throw SparkQuantException.badInput(source + ": " + total + " tokens, fewer than one window of --seq-len "
                        + seqLen);
            }
            long[] starts = new long[samples];
            SplittableRandom random = new SplittableRandom(seed);
            for (int i = 0; i < samples; i++) {
                starts[i] = random.nextLong(total - seqLen + 1);
            }
            long[] partitionStart = new long[counts.size()];
            for (int p = 1; p < counts.size(); p++) {
                partitionStart[p] = partitionStart[p - 1] + counts.get(p - 1);
            }
            List<Tuple3<Integer, Integer, int[]>> pieces = tokenized.mapPartitionsWithIndex(
                    (p, it) -> slices(partitionStart[p], it, starts, seqLen), false).collect();
            int[][] out = new int[samples][seqLen];
            for (Tuple3<Integer, Integer, int[]> piece : pieces) {
                System.arraycopy(piece._3(), 0, out[piece._1()], piece._2(), piece._3().length);
            }
            return List.of(out);
        } finally {
            tokenized.unpersist(false);
        }
    }

    /** (window, offset in window, tokens) for every part of a window that lies in this partition. */
    private static Iterator<Tuple3<Integer, Integer, int[]>> slices(long offset, Iterator<int[]> docs, long[] starts,
            int seqLen) {
        List<Tuple3<Integer, Integer, int[]>> out = new ArrayList<>();
        long position = offset;
        while (docs.hasNext()) {
            int[] doc = docs.next();
            long docEnd = position + doc.length;
            for (int w = 0; w < starts.length; w++) {
                long from = Math.max(starts[w], position);
                long to = Math.min(starts[w] + seqLen, docEnd);
                if (from < to) {
                    int[] slice = java.util.Arrays.copyOfRange(doc, (int) (from - position), (int) (to - position));
                    out.add(new Tuple3<>(w, (int) (from - starts[w]), slice));
                }
            }
            position = docEnd;
        }
        return out.iterator();
    }

}
