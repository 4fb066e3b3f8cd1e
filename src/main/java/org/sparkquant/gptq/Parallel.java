package org.sparkquant.gptq;

import java.util.function.IntConsumer;
import java.util.stream.IntStream;

/**
 * Parallel loops that end before they throw. A parallel stream's {@code forEach} rethrows a task's exception as soon
 * as that task fails, while its sibling tasks are still running. The solvers' loops write native working buffers
 * that a {@code finally} block frees, so a bad weight row could let the other rows write into freed memory (heap
 * corruption, seen as glibc aborting the JVM much later). {@link #forEach} returns or throws only once every task
 * has ended. It throws the failure with the lowest index, so the error a user sees does not depend on scheduling;
 * tasks above a known failure are skipped.
 */
final class Parallel {
    private Parallel() {}

    /** Runs {@code body} for 0 ≤ i < count in parallel; rethrows the lowest failing index's throwable. */
    static void forEach(int count, IntConsumer body) {
        Failure failure = new Failure();
        IntStream.range(0, count).parallel().forEach(i -> {
            if (i > failure.index()) {
                return;
            }
            try {
                body.accept(i);
            } catch (Throwable t) {
                failure.offer(i, t);
            }
        });
        failure.rethrow();
    }

    /** The failure with the lowest index so far. */
    private static final class Failure {
        private volatile int index = Integer.MAX_VALUE;
        private Throwable thrown;

        int index() {
            return index;
        }

        synchronized void offer(int i, Throwable t) {
            if (i < index) {
                index = i;
                thrown = t;
            }
        }

        synchronized void rethrow() {
            if (thrown instanceof RuntimeException e) {
                throw e;
            }
            if (thrown instanceof Error e) {
                throw e;
            }
            if (thrown != null) {
                throw new IllegalStateException(thrown); // IntConsumer cannot throw checked exceptions
            }
        }
    }
}
