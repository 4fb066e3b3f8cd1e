package org.sparkquant.spark;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;

import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;

/**
 * The per-JVM caches of an executor, so that the tasks it runs share what is expensive to load: open checkpoints
 * (headers parsed once) and the weights of the layer being processed. Only the most recent layer is kept, which is
 * what bounds an executor's memory to one layer.
 */
public final class ExecutorCache {
    /** Open checkpoints by URI. */
    private static final Map<String, TensorStore> CHECKPOINTS = new ConcurrentHashMap<>();
    /** Opened models (headers and small tensors only) by a key naming the source. */
    private static final Map<String, Object> MODELS = new ConcurrentHashMap<>();
    /** The current layer's loaded weights (or any value keyed per layer): at most one entry. */
    private static final Object LAYER_LOCK = new Object();
    private static String layerKey;
    private static Object layerValue;

    private ExecutorCache() {}

    public static TensorStore checkpoint(Storage storage, String uri) {
        return CHECKPOINTS.computeIfAbsent(uri, u -> TensorStore.open(storage, u));
    }

    /** A model opened once per JVM; what it holds must be small (metadata, norms), not layers. */
    @SuppressWarnings("unchecked")
    public static <T> T model(String key, Supplier<T> opener) {
        return (T) MODELS.computeIfAbsent(key, k -> opener.get());
    }

    /**
     * The value for {@code key}, loading it (once per JVM, even with concurrent tasks) and dropping the previous
     * layer's value first.
     */
    @SuppressWarnings("unchecked")
    public static <T> T layer(String key, Supplier<T> loader) {
        synchronized (LAYER_LOCK) {
            if (key.equals(layerKey)) {
                return (T) layerValue;
            }
            layerKey = null;
            layerValue = null; // let the previous layer go before loading the next one
            T value = loader.get();
            layerKey = key;
            layerValue = value;
            return value;
        }
    }

    /** Forgets everything (tests, and the driver when it runs tasks itself in local mode between runs). */
    public static void clear() {
        synchronized (LAYER_LOCK) {
            layerKey = null;
            layerValue = null;
        }
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
        CHECKPOINTS.values().forEach(TensorStore::close);
        CHECKPOINTS.clear();
    }
}
