package org.sparkquant.io;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.sparkquant.SparkQuantException;

/**
 * Every read and write of the project goes through here: Hadoop {@link FileSystem} for plain paths, {@code file://},
 * {@code s3a://}, {@code hdfs://} and whatever connectors the user has. Serializable as its settings only, so the
 * same storage is rebuilt on executors. Errors name the URI, never a credential.
 */
public final class Storage implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Small files read whole (configs, indexes, tokenizers) are bounded so that a wrong path cannot OOM us. */
    public static final long MAX_SMALL_FILE = 512L << 20;

    private final Map<String, String> settings;
    private transient Configuration configuration;
    /** Where files created through this view report their checksums, or null (see {@link #recording}). */
    private final transient OutputManifest.Checksums checksums;

    private Storage(Map<String, String> settings) {
        this(settings, null);
    }

    private Storage(Map<String, String> settings, OutputManifest.Checksums checksums) {
        this.settings = Collections.unmodifiableMap(new TreeMap<>(settings));
        this.checksums = checksums;
    }

    /**
     * This storage, with every file created through it hashed while it is written, into {@code checksums}: the
     * manifest of an output then needs no second read of its files.
     */
    public Storage recording(OutputManifest.Checksums checksums) {
        Storage view = new Storage(settings, checksums);
        view.configuration = configuration;
        return view;
    }

    /** Storage with Hadoop settings such as {@code fs.s3a.endpoint} on top of Hadoop's defaults. */
    public static Storage of(Map<String, String> hadoopSettings) {
        return new Storage(hadoopSettings);
    }

    public static Storage local() {
        return new Storage(Map.of());
    }

    public static Storage of(Configuration configuration) {
        Map<String, String> map = new TreeMap<>();
        configuration.forEach(e -> map.put(e.getKey(), e.getValue()));
        Storage storage = new Storage(map);
        storage.configuration = configuration;
        return storage;
    }

    public Map<String, String> settings() {
        return settings;
    }

    public synchronized Configuration configuration() {
        if (configuration == null) {
            Configuration conf = new Configuration();
            // Hadoop's default local file system writes .crc side files and fails reads of files edited by anything
            // else; model directories are shared with other tools, so use the raw one (uncached: the cache key
            // ignores the configuration).
            conf.set("fs.file.impl", "org.apache.hadoop.fs.RawLocalFileSystem");
            conf.setBoolean("fs.file.impl.disable.cache", true);
            settings.forEach(conf::set);
            configuration = conf;
        }
        return configuration;
    }

    /** A URI with a scheme is used as is; anything else is a local path, made absolute. */
    public static Path path(String uri) {
        if (uri == null || uri.isBlank()) {
            throw SparkQuantException.badInput("empty path");
        }
        try {
            try {
                URI parsed = new URI(uri);
                if (parsed.getScheme() != null && parsed.getScheme().length() > 1) {
                    if (parsed.getRawUserInfo() != null) {
                        // s3a://KEY:SECRET@bucket/...: a secret in a URI ends up in logs, reports and errors
                        throw SparkQuantException.badInput(redacted(parsed) + ": credentials in a URI are refused "
                                + "(they would be logged); use the AWS credential chain or fs.s3a.* settings");
                    }
                    return new Path(parsed);
                }
            } catch (URISyntaxException notEscaped) {
                // "file:/tmp/a b/x" as Hadoop's Path prints it (resolve() returns such strings): a scheme, then
                // characters a URI would escape; Hadoop's own parser takes it. Anything else is a local path.
                if (uri.matches("[A-Za-z][A-Za-z0-9+.-]+:.*")) {
                    Path hadoop = new Path(uri);
                    if (hadoop.toUri().getRawUserInfo() != null) {
                        throw SparkQuantException.badInput(redacted(hadoop.toUri()) + ": credentials in a URI are "
                                + "refused (they would be logged); use the AWS credential chain or fs.s3a.* settings");
                    }
                    return hadoop;
                }
            }
            return new Path(Paths.get(uri).toAbsolutePath().normalize().toUri());
        } catch (IllegalArgumentException e) {
            // Hadoop's Path and java.nio (InvalidPathException) reject some strings, e.g. with a NUL character
            throw SparkQuantException.badInput("invalid path '" + uri + "': " + e.getMessage());
        }
    }

    /** The URI with its user information (credentials) replaced by {@code ***}. */
    static String redacted(URI uri) {
        return uri.getScheme() + "://***@" + (uri.getHost() != null ? uri.getHost() : "")
                + (uri.getRawPath() != null ? uri.getRawPath() : "");
    }

    /**
     * The location a URI names, in one form for comparisons: a plain path becomes {@code file:}, {@code .} and
     * {@code ..} are resolved, local symbolic links followed, no trailing slash. No file system is contacted.
     */
    public String canonical(String uri) {
        URI q = path(uri).toUri();
        String out;
        if ("file".equals(q.getScheme())) {
            java.nio.file.Path local = Paths.get(q).normalize();
            java.nio.file.Path existing = local;
            java.util.ArrayDeque<java.nio.file.Path> rest = new java.util.ArrayDeque<>();
            while (existing != null && !java.nio.file.Files.exists(existing)) {
                rest.push(existing.getFileName());
                existing = existing.getParent();
            }
            java.nio.file.Path real = local;
            if (existing != null) {
                try {
                    real = existing.toRealPath();
                    while (!rest.isEmpty()) {
                        real = real.resolve(rest.pop());
                    }
                } catch (IOException e) {
                    real = local;
                }
            }
            out = "file://" + real.toAbsolutePath();
        } else {
            out = q.normalize().toString();
        }
        while (out.endsWith("/") && !out.endsWith("://")) {
            out = out.substring(0, out.length() - 1);
        }
        return out;
    }

    /** Whether two URIs name the same location or one lies inside the other. */
    public boolean overlaps(String a, String b) {
        String x = canonical(a);
        String y = canonical(b);
        return x.equals(y) || x.startsWith(y + "/") || y.startsWith(x + "/");
    }

    /** {@code base/child}, for both URIs and local paths. */
    public static String resolve(String base, String child) {
        Path parent = path(base);
        try {
            return new Path(parent, child).toString();
        } catch (IllegalArgumentException e) {
            // an empty child, or one Hadoop parses as a URI of its own ("c:x" has the scheme "c")
            throw SparkQuantException.badInput(base + ": invalid file name '" + child + "' (" + e.getMessage() + ")");
        }
    }

    public FileSystem fileSystem(Path path) {
        try {
            return path.getFileSystem(configuration());
        } catch (IOException e) {
            throw failure("cannot access", path.toString(), e);
        } catch (IllegalArgumentException e) {
            // a URI the file system cannot serve, e.g. s3a:///key without a bucket
            throw SparkQuantException.badInput("cannot access " + path + ": " + e.getMessage(), e);
        }
    }

    public boolean exists(String uri) {
        Path p = path(uri);
        try {
            return fileSystem(p).exists(p);
        } catch (IOException e) {
            throw failure("cannot access", uri, e);
        }
    }

    public boolean isDirectory(String uri) {
        Path p = path(uri);
        try {
            return fileSystem(p).getFileStatus(p).isDirectory();
        } catch (FileNotFoundException e) {
            return false;
        } catch (IOException e) {
            throw failure("cannot access", uri, e);
        }
    }

    public long length(String uri) {
        Path p = path(uri);
        try {
            return fileSystem(p).getFileStatus(p).getLen();
        } catch (FileNotFoundException e) {
            throw SparkQuantException.badInput(uri + ": no such file");
        } catch (IOException e) {
            throw failure("cannot access", uri, e);
        }
    }

    /** Names (not paths) of the direct children of a directory, sorted. */
    public List<String> list(String uri) {
        Path p = path(uri);
        try {
            List<String> names = new ArrayList<>();
            for (FileStatus status : fileSystem(p).listStatus(p)) {
                names.add(status.getPath().getName());
            }
            Collections.sort(names);
            return names;
        } catch (FileNotFoundException e) {
            throw SparkQuantException.badInput(uri + ": no such directory");
        } catch (IOException e) {
            throw failure("cannot list", uri, e);
        }
    }

    /** Opens a file for positional reads. */
    public RandomAccessInput open(String uri) {
        Path p = path(uri);
        try {
            FileSystem fs = fileSystem(p);
            long length = fs.getFileStatus(p).getLen();
            FSDataInputStream in = fs.open(p);
            return new HadoopInput(uri, in, length);
        } catch (FileNotFoundException e) {
            throw SparkQuantException.badInput(uri + ": no such file");
        } catch (IOException e) {
            throw failure("cannot open", uri, e);
        }
    }

    public InputStream openStream(String uri) {
        Path p = path(uri);
        try {
            return fileSystem(p).open(p);
        } catch (FileNotFoundException e) {
            throw SparkQuantException.badInput(uri + ": no such file");
        } catch (IOException e) {
            throw failure("cannot open", uri, e);
        }
    }

    public byte[] readAll(String uri) {
        try (RandomAccessInput in = open(uri)) {
            if (in.length() > MAX_SMALL_FILE) {
                throw SparkQuantException.badInput(uri + ": " + in.length() + " bytes, expected a small file");
            }
            byte[] bytes = new byte[(int) in.length()];
            in.readFully(0, bytes, 0, bytes.length);
            return bytes;
        }
    }

    public String readString(String uri) {
        return new String(readAll(uri), StandardCharsets.UTF_8);
    }

    /** Creates (or replaces) a file; parent directories are created. */
    public OutputStream create(String uri) {
        Path p = path(uri);
        try {
            OutputStream out = fileSystem(p).create(p, true);
            return checksums == null ? out : checksums.track(uri, out);
        } catch (IOException e) {
            throw failure("cannot create", uri, e);
        }
    }

    public void writeString(String uri, String content) {
        try (OutputStream out = create(uri)) {
            out.write(content.getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw failure("cannot write", uri, e);
        }
    }

    public void mkdirs(String uri) {
        Path p = path(uri);
        try {
            fileSystem(p).mkdirs(p);
        } catch (IOException e) {
            throw failure("cannot create directory", uri, e);
        }
    }

    /** Recursive delete; false when there was nothing. */
    public boolean delete(String uri) {
        Path p = path(uri);
        try {
            return fileSystem(p).delete(p, true);
        } catch (IOException e) {
            throw failure("cannot delete", uri, e);
        }
    }

    public void rename(String from, String to) {
        Path src = path(from);
        Path dst = path(to);
        try {
            if (!fileSystem(src).rename(src, dst)) {
                throw SparkQuantException.internal("cannot rename " + from + " to " + to, null);
            }
        } catch (IOException e) {
            throw failure("cannot rename " + from + " to", to, e);
        }
    }

    /**
     * Creates a small file only if nothing is at {@code uri}, atomically: a new file on the local file system
     * ({@code CREATE_NEW}), a conditional PUT on S3 ({@code If-None-Match: *}, through Hadoop's
     * {@code fs.option.create.conditional.overwrite}), {@code create(overwrite=false)} elsewhere (atomic on HDFS).
     * Returns false when something is already there.
     */
    public boolean createExclusive(String uri, String content) {
        Path p = path(uri);
        byte[] bytes = content.getBytes(StandardCharsets.UTF_8);
        try {
            if ("file".equals(p.toUri().getScheme())) {
                java.nio.file.Path local = Paths.get(p.toUri());
                java.nio.file.Files.createDirectories(local.getParent());
                java.nio.file.Files.write(local, bytes, java.nio.file.StandardOpenOption.CREATE_NEW,
                        java.nio.file.StandardOpenOption.WRITE);
                return true;
            }
            FileSystem fs = fileSystem(p);
            if ("s3a".equals(p.toUri().getScheme())) {
                try (OutputStream out = (OutputStream) fs.createFile(p).overwrite(true)
                        .must("fs.option.create.conditional.overwrite", true).build()) {
                    out.write(bytes);
                }
                return true;
            }
            try (OutputStream out = fs.create(p, false)) {
                out.write(bytes);
            }
            return true;
        } catch (java.nio.file.FileAlreadyExistsException | org.apache.hadoop.fs.FileAlreadyExistsException e) {
            return false;
        } catch (IOException e) {
            if (isPreconditionFailure(e)) {
                return false;
            }
            throw failure("cannot create", uri, e);
        }
    }

    /** S3's answer to a conditional write whose condition failed (412), as the s3a client reports it. */
    private static boolean isPreconditionFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String m = String.valueOf(t.getMessage());
            if (t.getClass().getSimpleName().equals("RemoteFileChangedException") || m.contains("412")
                    || m.contains("PreconditionFailed") || m.contains("Precondition Failed")) {
                return true;
            }
            if (t.getCause() == t) {
                break;
            }
        }
        return false;
    }

    /**
     * What identifies a file's content for a resumed run without reading all of a large one: its size, and the
     * SHA-256 of the whole file up to {@code wholeUpTo} bytes, else of its first and last MiB (a safetensors header
     * is at the start).
     */
    public String fingerprint(String uri, long wholeUpTo) {
        long size = length(uri);
        try {
            java.security.MessageDigest sha = java.security.MessageDigest.getInstance("SHA-256");
            try (RandomAccessInput in = open(uri)) {
                long mib = 1L << 20;
                if (size <= wholeUpTo) {
                    digestRange(in, 0, size, sha);
                } else {
                    digestRange(in, 0, Math.min(size, mib), sha);
                    digestRange(in, Math.max(mib, size - mib), size, sha);
                }
            }
            return "size " + size + ", sha256 " + java.util.HexFormat.of().formatHex(sha.digest())
                    + (size <= wholeUpTo ? "" : " (first and last MiB)");
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void digestRange(RandomAccessInput in, long from, long to, java.security.MessageDigest sha) {
        byte[] buffer = new byte[1 << 16];
        for (long at = from; at < to; ) {
            int n = (int) Math.min(buffer.length, to - at);
            in.readFully(at, buffer, 0, n);
            sha.update(buffer, 0, n);
            at += n;
        }
    }

    /** Copies a file byte for byte (tokenizer, generation config). */
    public void copy(String from, String to) {
        try (InputStream in = openStream(from); OutputStream out = create(to)) {
            in.transferTo(out);
        } catch (IOException e) {
            throw failure("cannot copy " + from + " to", to, e);
        }
    }

    private static SparkQuantException failure(String what, String uri, IOException e) {
        // The message of an S3 error can be long; keep its first line, which names the cause.
        String reason = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage().lines().findFirst().orElse("");
        return new SparkQuantException(SparkQuantException.Kind.BAD_INPUT, what + " " + uri + ": " + reason, e);
    }

    private static final class HadoopInput implements RandomAccessInput {
        private final String name;
        private final FSDataInputStream in;
        private final long length;

        HadoopInput(String name, FSDataInputStream in, long length) {
            this.name = name;
            this.in = in;
            this.length = length;
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public long length() {
            return length;
        }

        @Override
        public void readFully(long position, byte[] buffer, int offset, int count) {
            if (position < 0 || count < 0 || position > length - count) {
                throw SparkQuantException.badInput(name + ": read of " + count + " bytes at " + position
                        + " is past the end of the file (" + length + " bytes)");
            }
            try {
                in.readFully(position, buffer, offset, count);
            } catch (IOException e) {
                throw failure("cannot read", name, e);
            }
        }

        @Override
        public void close() {
            try {
                in.close();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
