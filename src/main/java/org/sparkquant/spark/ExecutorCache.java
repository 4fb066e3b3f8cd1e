package org.sparkquant.spark;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BiFunction;
import java.util.function.Predicate;
import java.util.function.Supplier;

import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;

/**
 * The per-JVM caches of an executor, so that the tasks it runs share what is expensive to load: open checkpoints
 * (headers parsed once) and the weights of the layer being processed. Only the most recent layer is kept, which is
 * what bounds an executor's memory to one layer.
 */
public final class ExecutorCache {
    /** Opened models (headers and small tensors only) by a key naming the source. */
    private static final Map<String, Object> MODELS = new ConcurrentHashMap<>();

    private ExecutorCache() {}

    public static TensorStore checkpoint(Storage storage, String uri) {
        return model("checkpoint:" + uri, () -> TensorStore.open(storage, uri));
    }

    /** A model opened once per JVM; what it holds must be small (metadata, norms), not layers. */
    @SuppressWarnings("unchecked")
    public static <T> T model(String key, Supplier<T> opener) {
        Object value = MODELS.get(key);
        if (value == null) {
            // not computeIfAbsent: openers may open other cached models (a GPTQ embedding opens its checkpoint)
            synchronized (MODELS) {
                value = MODELS.get(key);
                if (value == null) {
                    value = opener.get();
                    MODELS.put(key, value);
                }
            }
        }
        return (T) value;
    }

    /**
     * The value for {@code key}, loading it (once per JVM, even with concurrent tasks) and dropping the previous
     * layer's value first: the "layer" slot.
     */
    public static <T> T layer(String key, Supplier<T> loader) {
        return slot("layer", key, loader);
    }

    /**
     * The "layer" slot's value for {@code key}. When the slot holds a value whose key {@code reusable} accepts, it is
     * passed to {@code derive} with its key, which may build on it (e.g. a layer extended with more quantized
     * modules); otherwise {@code derive} gets nulls and the old value is already dropped. Nothing is closed here:
     * tasks of this JVM may still use the previous value (a recomputed partition runs an earlier layer inside a later
     * one's task).
     */
    public static <T> T layer(String key, Predicate<String> reusable, BiFunction<String, T, T> derive) {
        return slot("layer", key, reusable, derive);
    }

    /** Single-entry caches by slot name (e.g. one GPTQ factor per module input): a new key evicts the old value. */
    private static final Map<String, Object[]> SLOTS = new ConcurrentHashMap<>();

    /** The value for {@code key} in {@code slot}, replacing whatever the slot held for another key. */
    public static <T> T slot(String slot, String key, Supplier<T> loader) {
        return slot(slot, key, previousKey -> false, (previousKey, previous) -> loader.get());
    }

    @SuppressWarnings("unchecked")
    private static <T> T slot(String slot, String key, Predicate<String> reusable, BiFunction<String, T, T> derive) {
        Object[] entry = SLOTS.computeIfAbsent(slot, s -> new Object[2]);
        synchronized (entry) {
            if (key.equals(entry[0])) {
                return (T) entry[1];
            }
            boolean reuse = entry[0] != null && reusable.test((String) entry[0]);
            String previousKey = reuse ? (String) entry[0] : null;
            T previous = reuse ? (T) entry[1] : null;
            // the slot lets go of the old value first, so that a value not reused can be freed while the new loads
            entry[0] = null;
            entry[1] = null;
            T value = derive.apply(previousKey, previous);
            entry[0] = key;
            entry[1] = value;
            return value;
        }
    }

    /** Forgets everything (tests, and the driver when it runs tasks itself in local mode between runs). */
    public static void clear() {
        MODELS.values().forEach(m -> {
            if (m instanceof AutoCloseable c) {
                try {
                    c.close();
                } catch (Exception ignored) {
                    // closing cached readers is best effort
                }
            }
        });
        MODELS.clear();
        SLOTS.clear();
    }
}
