package org.sparkquant.io;

import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.sparkquant.SparkQuantException;

/**
 * The {@code _SUCCESS} file of a finished output: every file with its size and SHA-256. It is written last, so its
 * presence means the output is complete; {@link #verify} recomputes every checksum. Directories starting with
 * {@code _} (the work area) and {@code _SUCCESS} itself are not listed.
 */
public final class OutputManifest {
    public static final String FILE = "_SUCCESS";
    public static final String FORMAT = "sparkquant-manifest-v1";
    /** Suffix of a single-file output's checksum file ({@code sha256sum} format). */
    public static final String FILE_CHECKSUM_SUFFIX = ".sha256";

    public record Entry(String file, long size, String sha256) {}

    private OutputManifest() {}

    /**
     * Sizes and SHA-256 of files as they were written (see {@link Storage#recording}), by URI; a file written again
     * keeps its last checksum.
     */
    public static final class Checksums {
        private final Map<String, Entry> byUri = new ConcurrentHashMap<>();

        /** {@code out}, hashed as it is written; the checksum is recorded when it is closed. */
        OutputStream track(String uri, OutputStream target) {
            MessageDigest sha = sha256();
            return new FilterOutputStream(new DigestOutputStream(target, sha)) {
                private long size;
                private boolean closed;

                @Override
                public void write(byte[] b, int off, int len) throws IOException {
                    out.write(b, off, len);
                    size += len;
                }

                @Override
                public void write(int b) throws IOException {
                    out.write(b);
                    size++;
                }

                @Override
                public void close() throws IOException {
                    if (closed) {
                        return;
                    }
                    closed = true;
                    super.close();
                    byUri.put(uri, new Entry(uri, size, HexFormat.of().formatHex(sha.digest())));
                }
            };
        }

        Entry get(String uri) {
            return byUri.get(uri);
        }
    }

    /** Checksums the files of {@code directory} (recursively) and writes {@code _SUCCESS}. */
    public static List<Entry> write(Storage storage, String directory, String producer) {
        return write(storage, directory, producer, new Checksums());
    }

    /**
     * Writes {@code _SUCCESS} for the files of {@code directory}, taking the checksums recorded while they were
     * written where the file still has the recorded size, and reading the others.
     */
    public static List<Entry> write(Storage storage, String directory, String producer, Checksums written) {
        List<Entry> entries = new ArrayList<>();
        for (String file : files(storage, directory, "")) {
            String uri = Storage.resolve(directory, file);
            Entry known = written.get(uri);
            entries.add(known != null && storage.length(uri) == known.size()
                    ? new Entry(file, known.size(), known.sha256()) : entry(storage, directory, file));
        }
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = mapper.createObjectNode();
        root.put("format", FORMAT);
        root.put("producer", producer);
        ArrayNode list = root.putArray("files");
        for (Entry e : entries) {
            list.addObject().put("file", e.file()).put("size", e.size()).put("sha256", e.sha256());
        }
        try {
            storage.writeString(Storage.resolve(directory, FILE), mapper.writeValueAsString(root) + "\n");
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        return entries;
    }

    public static boolean isComplete(Storage storage, String directory) {
        return storage.exists(Storage.resolve(directory, FILE));
    }

    /** Problems found, one line each; empty when every file matches. */
    public static List<String> verify(Storage storage, String directory) {
        String uri = Storage.resolve(directory, FILE);
        if (!storage.exists(uri)) {
            throw SparkQuantException.badInput(directory + ": no " + FILE + " (the output is not finished, or was not "
                    + "written by sparkquant)");
        }
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(storage.readString(uri));
        } catch (JsonProcessingException e) {
            throw SparkQuantException.badInput(uri + ": not valid JSON (" + e.getOriginalMessage() + ")");
        }
        if (root == null || !FORMAT.equals(root.path("format").asText()) || !root.path("files").isArray()) {
            throw SparkQuantException.badInput(uri + ": not a " + FORMAT + " manifest");
        }
        List<String> problems = new ArrayList<>();
        List<String> listed = new ArrayList<>();
        for (JsonNode f : root.get("files")) {
            String file = f.path("file").asText();
            listed.add(file);
            String path = Storage.resolve(directory, file);
            if (!storage.exists(path)) {
                problems.add(file + ": missing");
                continue;
            }
            Entry actual = entry(storage, directory, file);
            if (actual.size() != f.path("size").asLong()) {
                problems.add(file + ": size " + actual.size() + ", manifest says " + f.path("size").asLong());
            } else if (!actual.sha256().equals(f.path("sha256").asText())) {
                problems.add(file + ": sha256 " + actual.sha256() + ", manifest says " + f.path("sha256").asText());
            }
        }
        for (String file : files(storage, directory, "")) {
            if (!listed.contains(file)) {
                problems.add(file + ": not in the manifest");
            }
        }
        return problems;
    }

    /**
     * Writes {@code FILE.sha256} of a single-file output (a GGUF file) whose SHA-256 was computed while it was
     * written under a temporary name; {@code uri} is the name it will have.
     */
    public static void writeFileChecksum(Storage storage, String uri, byte[] sha256) {
        storage.writeString(uri + FILE_CHECKSUM_SUFFIX, HexFormat.of().formatHex(sha256) + "  "
                + Storage.path(uri).getName() + "\n");
    }

    /**
     * Problems of a single-file output (a GGUF file) against its {@code FILE.sha256} ({@code sha256sum} format,
     * written before the file was renamed into place); empty when it matches.
     */
    public static List<String> verifyFile(Storage storage, String uri) {
        String sidecar = uri + FILE_CHECKSUM_SUFFIX;
        if (!storage.exists(sidecar)) {
            throw SparkQuantException.badInput(uri + ": no " + sidecar + " (not written by sparkquant quantize, or "
                    + "not finished)");
        }
        String line = storage.readString(sidecar).strip();
        int space = line.indexOf(' ');
        String expected = space < 0 ? line : line.substring(0, space);
        if (!expected.matches("[0-9a-f]{64}")) {
            throw SparkQuantException.badInput(sidecar + ": not a sha256sum line");
        }
        String name = Storage.path(uri).getName();
        Entry actual = entry(uri, name, storage);
        if (!actual.sha256().equals(expected)) {
            return List.of(name + ": sha256 " + actual.sha256() + ", " + sidecar + " says " + expected);
        }
        return List.of();
    }

    private static List<String> files(Storage storage, String directory, String prefix) {
        List<String> out = new ArrayList<>();
        String dir = prefix.isEmpty() ? directory : Storage.resolve(directory, prefix);
        for (String name : storage.list(dir)) {
            if (name.startsWith("_") || name.startsWith(".")) {
                continue;
            }
            String relative = prefix.isEmpty() ? name : prefix + "/" + name;
            if (storage.isDirectory(Storage.resolve(directory, relative))) {
                out.addAll(files(storage, directory, relative));
            } else {
                out.add(relative);
            }
        }
        return out;
    }

    private static Entry entry(Storage storage, String directory, String file) {
        return entry(Storage.resolve(directory, file), file, storage);
    }

    /** Size and SHA-256 of the file at {@code uri}, listed as {@code file}. */
    private static Entry entry(String uri, String file, Storage storage) {
        MessageDigest sha = sha256();
        long size = 0;
        byte[] buffer = new byte[1 << 20];
        try (InputStream in = storage.openStream(uri)) {
            for (int n; (n = in.read(buffer)) > 0; ) {
                sha.update(buffer, 0, n);
                size += n;
            }
        } catch (IOException e) {
            throw Storage.error("cannot read", uri, e);
        }
        return new Entry(file, size, HexFormat.of().formatHex(sha.digest()));
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
