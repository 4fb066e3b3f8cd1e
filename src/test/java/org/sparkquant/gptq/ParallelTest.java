package org.sparkquant.gptq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.sparkquant.SparkQuantException;

class ParallelTest {
    /**
     * Task 1 fails while task 0 is still running on another thread. A parallel stream would throw at once and let
     * task 0 go on writing (into native memory its caller then frees); Parallel must wait for it.
     */
    @Test
    void throwsOnlyAfterRunningSiblingsHaveEnded() {
        CountDownLatch started = new CountDownLatch(1);
        AtomicBoolean siblingEnded = new AtomicBoolean();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Parallel.forEach(2, i -> {
            if (i == 0) {
                started.countDown();
                sleep(400);
                siblingEnded.set(true);
            } else {
                await(started); // fail only once task 0 is surely running elsewhere
                throw new IllegalStateException("task 1");
            }
        }));
        assertEquals("task 1", e.getMessage());
        assertTrue(siblingEnded.get(), "forEach threw while a sibling task was still running");
    }

    @Test
    void theLowestFailingIndexWinsAndWorkAboveItIsSkipped() {
        AtomicInteger ran = new AtomicInteger();
        for (int round = 0; round < 20; round++) {
            RuntimeException e = assertThrows(RuntimeException.class, () -> Parallel.forEach(1000, i -> {
                ran.incrementAndGet();
                if (i % 100 == 37) {
                    throw new RuntimeException("index " + i);
                }
            }));
            assertEquals("index 37", e.getMessage());
        }
        assertTrue(ran.get() < 20 * 1000, "no task was skipped after a failure: " + ran.get());
    }

    @Test
    void runsEveryIndexOnceWithoutFailures() {
        int[] hits = new int[10_000];
        Parallel.forEach(hits.length, i -> hits[i]++);
        for (int h : hits) {
            assertEquals(1, h);
        }
        Parallel.forEach(0, i -> {
            throw new AssertionError("no index");
        });
    }

    @Test
    void solversReportTheFirstBadRowWhateverTheScheduling() {
        int n = 64;
        QuantConfig cfg = QuantConfig.defaults();
        GptqPreparation prep = Gptq.prepare(diagonalHessian(n), cfg);
        int rows = 600;
        float[] w = GptqLoopTest.weights(rows, n, 3);
        w[517 * n + 2] = Float.NaN;
        w[300 * n + 9] = Float.POSITIVE_INFINITY;
        w[599 * n] = Float.NaN;
        for (int round = 0; round < 5; round++) {
            SparkQuantException e = assertThrows(SparkQuantException.class, () -> Gptq.quantize(w, rows, prep, cfg));
            assertTrue(e.getMessage().contains("row 300 column 9"), e.getMessage());
            e = assertThrows(SparkQuantException.class, () -> Gptq.rtn(w, rows, n, cfg));
            assertTrue(e.getMessage().contains("row 300 column 9"), e.getMessage());
        }
    }

    /**
     * The regression behind the JVM aborts ("malloc(): unsorted double linked list corrupted"): with two rows and
     * the bad one second, the calling thread failed on row 1 and freed the working W while a pool thread was still
     * writing row 0 over the freed chunk's list pointers. Before the fix this loop aborted the JVM every run.
     */
    @Test
    void aBadRowNeverLetsOtherRowsWriteFreedMemory() {
        int n = 512;
        QuantConfig cfg = QuantConfig.defaults();
        GptqPreparation prep = Gptq.prepare(diagonalHessian(n), cfg);
        float[] w = GptqLoopTest.weights(2, n, 4);
        w[n + 3] = Float.NaN;
        for (int k = 0; k < 1500; k++) {
            SparkQuantException e = assertThrows(SparkQuantException.class, () -> Gptq.quantize(w, 2, prep, cfg));
            assertTrue(e.getMessage().contains("row 1 column 3"), e.getMessage());
        }
    }

    private static Hessian diagonalHessian(int n) {
        double[] h = new double[n * n];
        for (int i = 0; i < n; i++) {
            h[i * n + i] = 1 + i % 7;
        }
        return Hessian.of(h, n);
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void await(CountDownLatch latch) {
        try {
            assertTrue(latch.await(10, TimeUnit.SECONDS));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
