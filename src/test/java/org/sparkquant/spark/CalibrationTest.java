package org.sparkquant.spark;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;

class CalibrationTest {
    private static SparkSession spark;

    @TempDir
    Path tmp;

    @BeforeAll
    static void start() {
        spark = SparkSessions.create("calibration-test", Map.of("spark.master", "local[2]", "spark.ui.enabled", "false"));
    }

    @AfterAll
    static void stop() {
        spark.stop();
    }

    /** One token per character: makes the expected stream obvious. */
    private static final TextEncoder CHARS = text -> text.chars().toArray();

    @Test
    void windowsComeFromTheConcatenatedStreamWhateverTheSplits() throws Exception {
        StringBuilder text = new StringBuilder();
        StringBuilder stream = new StringBuilder();
        SplittableRandom r = new SplittableRandom(1);
        for (int i = 0; i < 400; i++) {
            String line = "doc" + i + "-" + "x".repeat(r.nextInt(1, 40));
            text.append(line).append('\n');
            if (i % 7 == 0) {
                text.append("   \n"); // blank lines are not documents
            }
            stream.append(line);
        }
        Path file = tmp.resolve("calib.txt");
        Files.writeString(file, text);

        List<int[]> a = Calibration.windows(spark.read().text(file.toString()).toJavaRDD().map(row -> row.getString(0))
                .filter(s -> !s.isBlank()), CHARS, 12, 50, 42, "calib.txt");
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        JavaRDD<String> manySplits = jsc.textFile(file.toString(), 9).filter(s -> !s.isBlank());
        assertTrue(manySplits.getNumPartitions() >= 9);
        List<int[]> b = Calibration.windows(manySplits, CHARS, 12, 50, 42, "calib.txt");

        SplittableRandom seeded = new SplittableRandom(42);
        int total = stream.length();
        for (int i = 0; i < 12; i++) {
            int start = (int) seeded.nextLong(total - 50 + 1);
            int[] expected = stream.substring(start, start + 50).chars().toArray();
            assertArrayEquals(expected, a.get(i), "window " + i);
            assertArrayEquals(expected, b.get(i), "window " + i + " with 9 splits");
        }
        List<int[]> otherSeed = Calibration.windows(manySplits, CHARS, 12, 50, 43, "calib.txt");
        assertTrue(!java.util.Arrays.equals(a.get(0), otherSeed.get(0)));
    }

    @Test
    void tooLittleTextIsAClearError() throws Exception {
        Path file = tmp.resolve("short.txt");
        Files.writeString(file, "just a few words\n");
        SparkQuantException e = assertThrows(SparkQuantException.class, () -> Calibration.windows(
                Calibration.documents(spark, file.toString(), Calibration.Format.TEXT, "text"), CHARS, 4, 100, 0,
                "short.txt"));
        assertTrue(e.getMessage().contains("fewer than one window"), e.getMessage());
    }

    @Test
    void jsonlAndParquetDocuments() throws Exception {
        Path jsonl = tmp.resolve("calib.jsonl");
        Files.writeString(jsonl, "{\"text\": \"first document\", \"id\": 1}\n{\"text\": \"second\", \"id\": 2}\n");
        Storage storage = Storage.local();
        assertEquals(Calibration.Format.JSONL, Calibration.detect(storage, jsonl.toString(), Calibration.Format.AUTO));
        List<String> docs = Calibration.documents(spark, jsonl.toString(), Calibration.Format.JSONL, "text").collect();
        assertEquals(List.of("first document", "second"), docs);
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> Calibration.documents(spark, jsonl.toString(), Calibration.Format.JSONL, "body"));
        assertTrue(e.getMessage().contains("no field 'body'") && e.getMessage().contains("--text-field"), e.getMessage());

        Path parquet = tmp.resolve("calib.parquet");
        spark.read().json(jsonl.toString()).coalesce(1).write().parquet(parquet.toString());
        assertEquals(Calibration.Format.PARQUET, Calibration.detect(storage, parquet.toString(), Calibration.Format.AUTO));
        assertEquals(docs, Calibration.documents(spark, parquet.toString(), Calibration.Format.PARQUET, "text").collect());
    }

    @Test
    void tokensAreUsedExactlyAsGiven() throws Exception {
        Path file = tmp.resolve("tokens.jsonl");
        Files.writeString(file, "{\"input_ids\": [1, 5, 7]}\n\n{\"input_ids\": [[2, 3, 4, 9]]}\n{\"input_ids\": [8]}\n");
        Storage storage = Storage.local();
        assertEquals(Calibration.Format.TOKENS, Calibration.detect(storage, file.toString(), Calibration.Format.AUTO));
        List<int[]> samples = Calibration.readTokens(storage, file.toString(), 2, 10);
        assertEquals(2, samples.size());
        assertArrayEquals(new int[] {1, 5, 7}, samples.get(0));
        assertArrayEquals(new int[] {2, 3, 4, 9}, samples.get(1));
        SparkQuantException e = assertThrows(SparkQuantException.class,
                () -> Calibration.readTokens(storage, file.toString(), 5, 9));
        assertTrue(e.getMessage().contains("line 3") && e.getMessage().contains("vocabulary of 9"), e.getMessage());
    }

}
