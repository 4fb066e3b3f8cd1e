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

    /**
     * s3a's retry and timeout settings that sparkquant sets unless the user (or the cluster's core-site.xml) does:
     * Hadoop's defaults retry an unreachable endpoint for minutes without a word (SDK attempts times s3a's
     * exponential retries); these give up within seconds on a closed port or a dead server, so that a wrong
     * endpoint or an outage surfaces as an error (an address that drops packets still costs the establish timeout,
     * s3a's minimum of 15 s, per attempt). Throttling (503 SlowDown) keeps s3a's own, longer retries.
     */
    public static final Map<String, String> S3A_DEFAULTS = Map.of(
            "fs.s3a.attempts.maximum", "2",
            "fs.s3a.retry.limit", "3",
            "fs.s3a.retry.interval", "500ms",
            "fs.s3a.connection.establish.timeout", "15s",
            "fs.s3a.connection.timeout", "60s");

    /** After this long, a call that has not returned is reported to {@link #notices} (and again as often). */
    static final long SLOW_CALL_MS = 5000;

    private final Map<String, String> settings;
    private transient Configuration configuration;
    /** Where files created through this view report their checksums, or null (see {@link #recording}). */
    private final transient OutputManifest.Checksums checksums;
    /** Where the CLI shows that a call is still waiting (null: nowhere, e.g. on executors). */
    private final transient java.util.function.Consumer<String> notices;
    private transient java.util.concurrent.ScheduledExecutorService watchdog;
    /** Called with each file's URI before this view creates it (see {@link #beforeEachCreate}), or null. */
    private final transient java.util.function.Consumer<String> creating;

    private Storage(Map<String, String> settings) {
        this(settings, null, null, null);
    }

    private Storage(Map<String, String> settings, OutputManifest.Checksums checksums,
            java.util.function.Consumer<String> notices, java.util.function.Consumer<String> creating) {
        this.settings = Collections.unmodifiableMap(new TreeMap<>(settings));
        this.checksums = checksums;
        this.notices = notices;
        this.creating = creating;
    }

    /**
     * This storage, with every file created through it hashed while it is written, into {@code checksums}: the
     * manifest of an output then needs no second read of its files.
     */
    public Storage recording(OutputManifest.Checksums checksums) {
        Storage view = new Storage(settings, checksums, notices, creating);
        view.configuration = configuration;
        return view;
    }

    /**
     * This storage, calling {@code hook} with a file's URI before it creates the file: a commit marks each file it
     * writes as a step of its run (where a crash test can halt it).
     */
    public Storage beforeEachCreate(java.util.function.Consumer<String> hook) {
        Storage view = new Storage(settings, checksums, notices, hook);
        view.configuration = configuration;
        return view;
    }

    /**
     * This storage, reporting every call that takes longer than {@value #SLOW_CALL_MS} ms to {@code notices} (one
     * line naming the operation and the URI, repeated while it waits): the progress a user sees while s3a retries.
     */
    public Storage withNotices(java.util.function.Consumer<String> notices) {
        return new Storage(settings, checksums, notices, creating);
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
            S3A_DEFAULTS.forEach((k, v) -> {
                String[] sources = conf.getPropertySources(k);
                if (sources == null || java.util.Arrays.stream(sources).allMatch("core-default.xml"::equals)) {
                    conf.set(k, v, "sparkquant");
                }
            });
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
        if ("s3a".equals(path.toUri().getScheme())) {
            checkEndpoint(path.toUri().getHost());
        }
        try {
            return path.getFileSystem(configuration());
        } catch (IOException e) {
            throw failure("cannot access", path.toString(), e);
        } catch (IllegalArgumentException e) {
            if ("s3a".equals(path.toUri().getScheme()) && mentionsEndpoint(e)) {
                throw SparkQuantException.badInput("fs.s3a.endpoint: not a valid endpoint URL for " + path + " ("
                        + firstLine(e) + ")", e);
            }
            // a URI the file system cannot serve, e.g. s3a:///key without a bucket
            throw SparkQuantException.badInput("cannot access " + path + ": " + e.getMessage(), e);
        }
    }

    public boolean exists(String uri) {
        Path p = path(uri);
        try (Watch watch = watch("check", uri)) {
            return fileSystem(p).exists(p);
        } catch (IOException e) {
            throw failure("cannot access", uri, e);
        }
    }

    public boolean isDirectory(String uri) {
        Path p = path(uri);
        try (Watch watch = watch("check", uri)) {
            return fileSystem(p).getFileStatus(p).isDirectory();
        } catch (FileNotFoundException e) {
            return false;
        } catch (IOException e) {
            throw failure("cannot access", uri, e);
        }
    }

    public long length(String uri) {
        Path p = path(uri);
        try (Watch watch = watch("check", uri)) {
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
        try (Watch watch = watch("list", uri)) {
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
        try (Watch watch = watch("open", uri)) {
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
        try (Watch watch = watch("open", uri)) {
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
        if (creating != null) {
            creating.accept(uri);
        }
        Path p = path(uri);
        try {
            OutputStream out = fileSystem(p).create(p, true);
            return checksums == null ? out : checksums.track(uri, out);
        } catch (IOException e) {
            throw failure("cannot create", uri, e);
        }
    }

    public void writeString(String uri, String content) {
        try (Watch watch = watch("write", uri); OutputStream out = create(uri)) {
            out.write(content.getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw failure("cannot write", uri, e);
        }
    }

    public void mkdirs(String uri) {
        Path p = path(uri);
        try (Watch watch = watch("create directory", uri)) {
            fileSystem(p).mkdirs(p);
        } catch (IOException e) {
            throw failure("cannot create directory", uri, e);
        }
    }

    /** Recursive delete; false when there was nothing. */
    public boolean delete(String uri) {
        Path p = path(uri);
        try (Watch watch = watch("delete", uri)) {
            return fileSystem(p).delete(p, true);
        } catch (IOException e) {
            throw failure("cannot delete", uri, e);
        }
    }

    public void rename(String from, String to) {
        Path src = path(from);
        Path dst = path(to);
        try (Watch watch = watch("rename to", to)) {
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
        try (Watch watch = watch("create", uri)) {
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

    /**
     * A malformed {@code fs.s3a.endpoint} (or the bucket's own) is the user's error, named as such: s3a would report
     * it as an unknown host or a URI error of the request, or retry it as an outage.
     */
    private void checkEndpoint(String bucket) {
        Configuration conf = configuration();
        String key = "fs.s3a.bucket." + bucket + ".endpoint";
        if (bucket == null || conf.getTrimmed(key, "").isEmpty()) {
            key = "fs.s3a.endpoint";
        }
        String value = conf.getTrimmed(key, "");
        if (value.isEmpty()) {
            return;
        }
        String problem = null;
        try {
            URI u = new URI(value.contains("://") ? value : "https://" + value);
            if (!"http".equalsIgnoreCase(u.getScheme()) && !"https".equalsIgnoreCase(u.getScheme())) {
                problem = "the scheme must be http or https";
            } else if (u.getHost() == null || u.getHost().isEmpty()) {
                problem = "no host name";
            } else if (u.getPort() > 65535) {
                problem = "port " + u.getPort() + " is out of range";
            }
        } catch (URISyntaxException e) {
            problem = e.getReason() + " at index " + e.getIndex();
        }
        if (problem != null) {
            // the value is shown unless it could hold credentials (user info)
            throw SparkQuantException.badInput(key + (value.contains("@") ? "" : " '" + value + "'") + " is not a "
                    + "valid endpoint URL (" + problem + "); e.g. http://127.0.0.1:9000 or "
                    + "https://s3.eu-west-1.amazonaws.com");
        }
    }

    /** A call in progress; closing it ends its notices. */
    interface Watch extends AutoCloseable {
        @Override
        void close();
    }

    /** Reports a call that is still running after {@value #SLOW_CALL_MS} ms, and every 10 s after that. */
    private Watch watch(String what, String uri) {
        if (notices == null) {
            return () -> { };
        }
        java.util.concurrent.ScheduledExecutorService w;
        synchronized (this) {
            if (watchdog == null) {
                watchdog = java.util.concurrent.Executors.newSingleThreadScheduledExecutor(r -> {
                    Thread t = new Thread(r, "sparkquant-storage-watch");
                    t.setDaemon(true);
                    return t;
                });
            }
            w = watchdog;
        }
        long start = System.nanoTime();
        java.util.concurrent.ScheduledFuture<?> f = w.scheduleAtFixedRate(() -> notices.accept("waiting for "
                + what + " " + uri + " for " + (System.nanoTime() - start) / 1_000_000_000L + " s (the storage does "
                + "not answer; s3a retries: fs.s3a.retry.limit, fs.s3a.attempts.maximum)"), SLOW_CALL_MS, 10_000,
                java.util.concurrent.TimeUnit.MILLISECONDS);
        return () -> f.cancel(false);
    }

    private static SparkQuantException failure(String what, String uri, IOException e) {
        return error(what, uri, e);
    }

    /**
     * The error of a failed storage call, naming the operation and the URI: the environment's (exit 1) when the
     * storage could not be reached or answered with a server error after the client's retries, else the user's
     * (exit 2: a missing file, a denied access, a malformed object).
     */
    public static SparkQuantException error(String what, String uri, Throwable e) {
        // The message of an S3 error can be long; keep its first line, which names the cause.
        Throwable cause = unreachable(e);
        if (cause != null) {
            // the network's own words (ConnectException: Connection refused) say more than the client's wrappers
            for (Throwable t = cause; t != null && t.getCause() != t; t = t.getCause()) {
                if (t.getClass().getName().startsWith("java.net.")) {
                    cause = t;
                }
            }
            String reason = cause.getClass().getSimpleName() + ": " + firstLine(cause);
            return new SparkQuantException(SparkQuantException.Kind.ENVIRONMENT, what + " " + uri + ": the storage "
                    + "did not answer after s3a's retries (" + (reason.length() > 200 ? reason.substring(0, 200)
                    + "..." : reason) + "); check fs.s3a.endpoint and the network, then continue with --resume", e);
        }
        return new SparkQuantException(SparkQuantException.Kind.BAD_INPUT, what + " " + uri + ": " + firstLine(e), e);
    }

    /** The cause that says the storage was unreachable or failed on its side, or null. */
    public static Throwable unreachable(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String name = t.getClass().getName();
            if (t instanceof java.net.ConnectException || t instanceof java.net.SocketTimeoutException
                    || t instanceof java.net.NoRouteToHostException || t instanceof java.net.UnknownHostException
                    || t instanceof java.net.SocketException || t instanceof org.apache.hadoop.net.ConnectTimeoutException
                    || name.equals("org.apache.hadoop.fs.s3a.AWSApiCallTimeoutException")
                    || name.equals("org.apache.hadoop.fs.s3a.AWSStatus500Exception")
                    || name.equals("org.apache.hadoop.fs.s3a.AWSServiceThrottledException")
                    || name.equals("org.apache.http.NoHttpResponseException")
                    || name.equals("org.apache.http.conn.HttpHostConnectException")
                    || name.equals("software.amazon.awssdk.core.exception.ApiCallTimeoutException")
                    || name.equals("software.amazon.awssdk.core.exception.ApiCallAttemptTimeoutException")
                    || String.valueOf(t.getMessage()).contains("Unable to execute HTTP request")) {
                return t;
            }
            if (t.getCause() == t) {
                break;
            }
        }
        return null;
    }

    private static boolean mentionsEndpoint(Throwable e) {
        for (Throwable t = e; t != null && t.getCause() != t; t = t.getCause()) {
            String m = String.valueOf(t.getMessage()).toLowerCase(java.util.Locale.ROOT);
            if (m.contains("endpoint") || t instanceof URISyntaxException) {
                return true;
            }
        }
        return false;
    }

    private static String firstLine(Throwable e) {
        return e.getMessage() == null ? e.getClass().getSimpleName()
                : e.getMessage().lines().findFirst().orElse(e.getClass().getSimpleName());
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
