package org.sparkquant.io;

import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.sparkquant.SparkQuantException;

/**
 * The tensors of a checkpoint directory: one {@code model.safetensors}, or shards listed by
 * {@code model.safetensors.index.json}. Only headers are read when it opens; tensor data is read on demand with
 * positional reads, so a driver holds metadata only and an executor reads just the rows it needs.
 */
public final class TensorStore implements TensorReader {
    public static final String INDEX = "model.safetensors.index.json";
    public static final String SINGLE = "model.safetensors";

    private final String directory;
    private final Map<String, SafetensorsFile> files;
    private final Map<String, String> fileOf;

    private TensorStore(String directory, Map<String, SafetensorsFile> files, Map<String, String> fileOf) {
        this.directory = directory;
        this.files = files;
        this.fileOf = fileOf;
    }

    public static TensorStore open(Storage storage, String directory) {
        Map<String, SafetensorsFile> files = new LinkedHashMap<>();
        Map<String, String> fileOf = new TreeMap<>();
        try {
            String index = Storage.resolve(directory, INDEX);
            if (storage.exists(index)) {
                Map<String, String> weightMap = readIndex(storage, index);
                for (Map.Entry<String, String> e : weightMap.entrySet()) {
                    String file = e.getValue();
                    if (!files.containsKey(file)) {
                        String uri = Storage.resolve(directory, file);
                        if (!storage.exists(uri)) {
                            throw SparkQuantException.badInput(index + ": shard '" + file + "' does not exist");
                        }
                        files.put(file, SafetensorsFile.open(storage, uri));
                    }
                    if (!files.get(file).tensors().containsKey(e.getKey())) {
                        throw SparkQuantException.badInput(index + ": tensor '" + e.getKey() + "' is not in " + file);
                    }
                    fileOf.put(e.getKey(), file);
                }
            } else {
                List<String> shards = storage.list(directory).stream().filter(n -> n.endsWith(".safetensors")).toList();
                if (shards.isEmpty()) {
                    throw SparkQuantException.badInput(directory + ": no " + SINGLE + " and no " + INDEX);
                }
                for (String file : shards) {
                    SafetensorsFile f = SafetensorsFile.open(storage, Storage.resolve(directory, file));
                    files.put(file, f);
                    for (String tensor : f.tensors().keySet()) {
                        String previous = fileOf.put(tensor, file);
                        if (previous != null) {
                            throw SparkQuantException.badInput(directory + ": tensor '" + tensor + "' is in both "
                                    + previous + " and " + file);
                        }
                    }
                }
            }
        } catch (RuntimeException e) {
            files.values().forEach(SafetensorsFile::close);
            throw e;
        }
        return new TensorStore(directory, files, Collections.unmodifiableMap(fileOf));
    }

    private static Map<String, String> readIndex(Storage storage, String index) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(storage.readString(index));
        } catch (JsonProcessingException e) {
            throw SparkQuantException.badInput(index + ": not valid JSON (" + e.getOriginalMessage() + ")");
        }
        JsonNode map = root == null ? null : root.get("weight_map");
        if (map == null || !map.isObject()) {
            throw SparkQuantException.badInput(index + ": missing the weight_map object");
        }
        Map<String, String> weightMap = new TreeMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = map.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String file = e.getValue().isTextual() ? e.getValue().textValue() : null;
            // a plain file name of this directory: Hadoop's Path would read "c:x" as a URI with the scheme "c"
            if (file == null || file.isEmpty() || file.equals(".") || file.equals("..") || file.contains("/")
                    || file.contains("\\") || file.contains(":")) {
                throw SparkQuantException.badInput(index + ": invalid shard name for '" + e.getKey() + "': "
                        + e.getValue());
            }
            weightMap.put(e.getKey(), file);
        }
        return weightMap;
    }

    public String directory() {
        return directory;
    }

    @Override
    public String source() {
        return directory;
    }

    /** Tensor names, sorted. */
    @Override
    public java.util.Set<String> names() {
        return fileOf.keySet();
    }

    @Override
    public boolean contains(String tensor) {
        return fileOf.containsKey(tensor);
    }

    @Override
    public long[] shape(String tensor) {
        return info(tensor).shape();
    }

    public TensorInfo info(String tensor) {
        return file(tensor).tensor(tensor);
    }

    /** The shard file name holding a tensor. */
    public String shardOf(String tensor) {
        String file = fileOf.get(tensor);
        if (file == null) {
            throw SparkQuantException.badInput(directory + ": no tensor '" + tensor + "'");
        }
        return file;
    }

    /** Shard file names in order, with their headers. */
    public Map<String, SafetensorsFile> shards() {
        return Collections.unmodifiableMap(files);
    }

    public SafetensorsFile file(String tensor) {
        return files.get(shardOf(tensor));
    }

    @Override
    public float[] readFloats(String tensor) {
        return file(tensor).readFloats(tensor);
    }

    @Override
    public float[] readRows(String tensor, long r0, long r1) {
        return file(tensor).readRows(tensor, r0, r1);
    }

    public byte[] readRaw(String tensor) {
        return file(tensor).readRaw(tensor);
    }

    @Override
    public void close() {
        files.values().forEach(SafetensorsFile::close);
    }
}
