package org.sparkquant.model;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.opentest4j.TestAbortedException;
import org.sparkquant.testing.TestPaths;
import org.sparkquant.testing.TestPython;

/**
 * What transformers makes of the fixture configs (python/model_reference.py): the committed output, or a live run
 * (fixture configs plus the shared models' configs) made once per JVM when python has transformers.
 */
final class TransformersReference {
    static final ObjectMapper JSON = new ObjectMapper();

    private static JsonNode live;
    private static String noLive;

    private TransformersReference() {}

    static Path configs() {
        return TestPaths.fixtures("model").resolve("configs");
    }

    /** Fixture config files by name (file name without .json), sorted. */
    static List<Path> configFiles() {
        try (Stream<Path> s = Files.list(configs())) {
            return s.filter(p -> p.toString().endsWith(".json")).sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static String configText(String name) {
        try {
            return Files.readString(configs().resolve(name + ".json"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static JsonNode committed() {
        try {
            return JSON.readTree(TestPaths.fixtures("model").resolve("transformers-reference.json").toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The shared models' directories that exist. */
    static List<Path> sharedModels() {
        List<Path> models = new ArrayList<>();
        for (String m : List.of("models/dev-llama2-26m", "models/stories260K")) {
            try {
                models.add(TestPaths.shared(m));
            } catch (TestAbortedException absent) {
                // ../shared is optional
            }
        }
        return models;
    }

    /** Skips the calling test without python + transformers. */
    static synchronized JsonNode live() {
        if (live == null && noLive == null) {
            try {
                Path python = TestPython.require("transformers", "torch");
                List<String> args = new ArrayList<>(List.of("python/model_reference.py"));
                configFiles().forEach(p -> args.add(p.toString()));
                sharedModels().forEach(p -> args.add(p.resolve("config.json").toString()));
                live = JSON.readTree(TestPython.check(python, args, 300));
            } catch (TestAbortedException e) {
                noLive = e.getMessage();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
        assumeTrue(noLive == null, noLive);
        return live;
    }
}
