package org.sparkquant.spark;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BiFunction;
import java.util.function.Predicate;
import java.util.function.Supplier;

import org.apache.spark.TaskContext;
import org.apache.spark.util.TaskCompletionListener;
import org.sparkquant.io.Storage;
import org.sparkquant.io.TensorStore;
import org.sparkquant.nn.LayerWeights;
import org.sparkquant.nn.LinearWeights;

/**
 * The per-JVM caches of an executor, so that the tasks it runs share what is expensive to load: open checkpoints
 * (headers parsed once) and the weights of the layer being processed. Only the most recent layer is kept, and a
 * replaced layer's off-heap memory is freed once no task uses it, which is what bounds an executor's memory to one
 * layer.
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
     * The layer for {@code key}, loading it (once per JVM, even with concurrent tasks) and retiring the previous
     * layer first: the "layer" slot.
     */
    public static LayerWeights layer(String key, Supplier<LayerWeights> loader) {
        return layer(key, previousKey -> false, (previousKey, previous) -> loader.get());
    }

    /**
     * The "layer" slot's layer for {@code key}. When the slot holds a layer whose key {@code reusable} accepts, it
     * is passed to {@code derive} with its key, which may build on it (a layer extended with more quantized modules
     * shares the others); otherwise {@code derive} gets nulls. The task that asks uses the layer until it completes.
     * A retired layer's off-heap modules are closed as soon as no running task uses it and no layer still in use
     * shares them (a recomputed partition may run an earlier layer inside a later one's task, so retiring alone
     * does not free).
     */
    public static LayerWeights layer(String key, Predicate<String> reusable,
                                     BiFunction<String, LayerWeights, LayerWeights> derive) {
        synchronized (LAYERS) {
            Held current = LAYERS.current;
            if (current != null && key.equals(current.key)) {
                LAYERS.use(current);
                return current.value;
            }
            boolean reuse = current != null && reusable.test(current.key);
            if (current != null) {
                LAYERS.current = null;
                LAYERS.retired.add(current);
                if (!reuse) {
                    LAYERS.closeUnused(); // freed while the new layer loads
                }
            }
            LayerWeights value = derive.apply(reuse ? current.key : null, reuse ? current.value : null);
            Held held = new Held(key, value);
            LAYERS.current = held;
            LAYERS.use(held);
            LAYERS.closeUnused(); // what the extended layer replaced
            return value;
        }
    }

    /** A cached layer and the number of running tasks that use it. */
    private static final class Held {
        final String key;
        final LayerWeights value;
        int users;

        Held(String key, LayerWeights value) {
            this.key = key;
            this.value = value;
        }
    }

    /** The layer slot: the current layer, and retired layers that running tasks still use. */
    private static final class Layers {
        Held current;
        final List<Held> retired = new ArrayList<>();

        /** Counts a user of {@code held} until the running task completes (outside a task: the caller owns it). */
        void use(Held held) {
            TaskContext task = TaskContext.get();
            if (task == null) {
                return;
            }
            held.users++;
            task.addTaskCompletionListener((TaskCompletionListener) context -> {
                synchronized (LAYERS) {
                    held.users--;
                    closeUnused();
                }
            });
        }

        /** Closes the modules of retired, unused layers that no layer in use shares. */
        void closeUnused() {
            Set<LinearWeights> live = Collections.newSetFromMap(new IdentityHashMap<>());
            if (current != null) {
                live.addAll(current.value.linears().values());
            }
            for (Held h : retired) {
                if (h.users > 0) {
                    live.addAll(h.value.linears().values());
                }
            }
            Set<LinearWeights> closed = Collections.newSetFromMap(new IdentityHashMap<>());
            for (Iterator<Held> it = retired.iterator(); it.hasNext(); ) {
                Held h = it.next();
                if (h.users > 0) {
                    continue;
                }
                for (LinearWeights module : h.value.linears().values()) {
                    if (!live.contains(module) && closed.add(module)) {
                        module.close();
                    }
                }
                it.remove();
            }
        }
    }

    private static final Layers LAYERS = new Layers();

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
        synchronized (LAYERS) {
            LAYERS.current = null; // dropped, not closed: a caller outside a task may still hold it
            LAYERS.retired.clear();
        }
    }
}
