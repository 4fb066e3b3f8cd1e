package org.sparkquant.io;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Writes a checkpoint's tensors as safetensors shards of at most {@code maxShardBytes} of data each (one tensor larger
 * than that gets a shard of its own), named like Hugging Face's {@code model-00001-of-00002.safetensors}, plus
 * {@code model.safetensors.index.json}; a single shard is {@code model.safetensors} without an index. Tensors are
 * written in the declared order, one shard file open at a time.
 */
public final class ShardedSafetensorsWriter implements AutoCloseable {
    private final Storage storage;
    private final String directory;
    private final Map<String, String> metadata;
    private final List<List<TensorSpec>> shards;
    private final List<String> fileNames;
    private final Set<String> empty;
    private int shard = -1;
    private SafetensorsWriter writer;

    private ShardedSafetensorsWriter(Storage storage, String directory, List<List<TensorSpec>> shards,
            Map<String, String> metadata) {
        this.storage = storage;
        this.directory = directory;
        this.shards = shards;
        this.metadata = metadata;
        this.fileNames = new ArrayList<>();
        this.empty = SafetensorsWriter.emptyTensors(directory, shards.stream().flatMap(List::stream).toList());
        int n = shards.size();
        for (int i = 0; i < n; i++) {
            fileNames.add(n == 1 ? TensorStore.SINGLE : String.format("model-%05d-of-%05d.safetensors", i + 1, n));
        }
    }

    public static ShardedSafetensorsWriter create(Storage storage, String directory, List<TensorSpec> specs,
            long maxShardBytes, Map<String, String> metadata) {
        return new ShardedSafetensorsWriter(storage, directory, plan(specs, maxShardBytes), metadata);
    }

    static List<List<TensorSpec>> plan(List<TensorSpec> specs, long maxShardBytes) {
        List<List<TensorSpec>> shards = new ArrayList<>();
        List<TensorSpec> current = new ArrayList<>();
        long size = 0;
        for (TensorSpec spec : specs) {
            if (!current.isEmpty() && size + spec.byteSize() > maxShardBytes) {
                shards.add(current);
                current = new ArrayList<>();
                size = 0;
            }
            current.add(spec);
            size += spec.byteSize();
        }
        shards.add(current);
        return shards;
    }

    /** File names of the shards, in order. */
    public List<String> fileNames() {
        return List.copyOf(fileNames);
    }

    public void write(String tensor, byte[] bytes, int offset, int length) {
        if (length == 0 && empty.contains(tensor)) {
            return; // see SafetensorsWriter#write
        }
        while (writer == null || writer.expected() == null) {
            openNext(tensor);
        }
        writer.write(tensor, bytes, offset, length);
    }

    public void write(String tensor, byte[] bytes) {
        write(tensor, bytes, 0, bytes.length);
    }

    private void openNext(String tensor) {
        if (writer != null) {
            writer.close();
        }
        shard++;
        if (shard >= shards.size()) {
            throw new IllegalStateException(directory + ": no more tensors expected, got '" + tensor + "'");
        }
        String uri = Storage.resolve(directory, fileNames.get(shard));
        writer = SafetensorsWriter.create(storage.create(uri), uri, shards.get(shard), metadata);
    }

    /** Finishes the last shard and writes the index; fails if any declared tensor is missing. */
    @Override
    public void close() {
        while (shard < shards.size() - 1) {
            // only shards of empty tensors can still be pending; opening them writes their headers
            openNext(null);
            if (writer.expected() != null) {
                throw new IllegalStateException(directory + ": closed before '" + writer.expected() + "' was written");
            }
        }
        if (writer != null) {
            writer.close();
        }
        if (shards.size() > 1) {
            storage.writeString(Storage.resolve(directory, TensorStore.INDEX), index());
        }
    }

    private String index() {
        ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = json.createObjectNode();
        long total = 0;
        Map<String, String> weightMap = new TreeMap<>();
        for (int i = 0; i < shards.size(); i++) {
            for (TensorSpec spec : shards.get(i)) {
                total += spec.byteSize();
                weightMap.put(spec.name(), fileNames.get(i));
            }
        }
        root.putObject("metadata").put("total_size", total);
        ObjectNode map = root.putObject("weight_map");
        new LinkedHashMap<>(weightMap).forEach(map::put);
        try {
            return json.writeValueAsString(root) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
