package org.sparkquant.spark;

import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;

import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;

/**
 * The {@code _work/} directory under an output: what a run stages before the final files exist, and what
 * {@code --resume} continues from. Writes are idempotent: a file is written under a unique temporary name and renamed
 * into place, and a file that is already in place is kept, so retried and speculative tasks (which compute the same
 * bytes) never duplicate or tear output.
 */
public final class WorkDir implements Serializable {
    private static final long serialVersionUID = 1L;
    public static final String NAME = "_work";

    private final Storage storage;
    private final String root;
    /** The driver's fault hook and its step count; tasks get a copy without them. */
    private transient FaultHook faults;
    private transient AtomicInteger steps;

    /** The work directory of an output directory: {@code OUTPUT/_work}. */
    public WorkDir(Storage storage, String output) {
        this(storage, output, false);
    }

    private WorkDir(Storage storage, String output, boolean file) {
        this.storage = storage;
        this.root = file ? output + "." + NAME : Storage.resolve(output, NAME);
    }

    /** The work directory of a single-file output (a GGUF file): {@code OUTPUT._work}, beside it. */
    public static WorkDir forFile(Storage storage, String output) {
        return new WorkDir(storage, output, true);
    }

    /** This work directory, calling {@code hook} before each state change the driver makes ({@link #replace}, deletes). */
    WorkDir withFaults(FaultHook hook) {
        return new WorkDir(this, hook);
    }

    private WorkDir(WorkDir other, FaultHook hook) {
        this.storage = other.storage;
        this.root = other.root;
        this.faults = hook;
        this.steps = new AtomicInteger();
    }

    /**
     * Marks the driver's next state change ({@link FaultHook.Point#WORK_STATE}); the output targets call it before
     * each step of their commit too, so that a test can halt a run at every one of them.
     */
    void step(String what) {
        if (faults != null) {
            faults.atState(steps.getAndIncrement(), what);
        }
    }

    public String root() {
        return root;
    }

    public String path(String relative) {
        return Storage.resolve(root, relative);
    }

    public boolean exists(String relative) {
        return storage.exists(path(relative));
    }

    /** Writes {@code relative} atomically unless it already exists; returns false when it was already there. */
    public boolean writeOnce(String relative, Writer writer) {
        String target = path(relative);
        if (storage.exists(target)) {
            return false;
        }
        String temp = target + ".tmp-" + UUID.randomUUID();
        try (OutputStream out = storage.create(temp)) {
            writer.write(out);
        } catch (IOException e) {
            storage.delete(temp);
            throw Storage.error("cannot write", temp, e);
        } catch (RuntimeException e) {
            storage.delete(temp);
            throw e;
        }
        if (storage.exists(target)) {
            storage.delete(temp); // another attempt won the race with the same bytes
            return false;
        }
        try {
            storage.rename(temp, target);
        } catch (SparkQuantException e) {
            if (!storage.exists(target)) {
                throw e;
            }
            storage.delete(temp);
            return false;
        }
        return true;
    }

    /** Replaces {@code relative} atomically (progress records). */
    public void replace(String relative, String content) {
        String target = path(relative);
        String temp = target + ".tmp-" + UUID.randomUUID();
        String what = "replace " + relative + " [" + (content.length() <= 40 ? content.strip()
                : "sha256 " + sha256(content).substring(0, 12))
                + "]: ";
        step(what + "write temporary");
        storage.writeString(temp, content);
        step(what + "delete old");
        storage.delete(target);
        step(what + "rename");
        storage.rename(temp, target);
    }

    private static String sha256(String content) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                    .digest(content.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    public String read(String relative) {
        return storage.readString(path(relative));
    }

    public void delete(String relative) {
        step("delete " + relative);
        storage.delete(path(relative));
    }

    public void mkdirs() {
        storage.mkdirs(root);
    }

    public void deleteAll() {
        step("delete " + NAME);
        storage.delete(root);
    }

    @FunctionalInterface
    public interface Writer {
        void write(OutputStream out) throws IOException;
    }
}
