package org.sparkquant.cli;

import java.io.IOException;
import java.io.StringReader;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import org.sparkquant.SparkQuantException;
import org.sparkquant.io.Storage;

/**
 * {@code --config FILE}: a job file (YAML or .properties) whose keys are the command's long option names without
 * dashes ({@code bits: 4}, {@code group-size: 128}, {@code desc-act: true}, {@code conf: {fs.s3a.endpoint: ...}}).
 * Its options are placed before the command line's own, so flags given on the command line win.
 */
final class JobFile {
    private JobFile() {}

    /** The arguments with every {@code --config FILE} replaced by the options it holds. */
    static String[] expand(String[] args) {
        List<String> out = new ArrayList<>();
        List<String> fromFiles = new ArrayList<>();
        int commandAt = -1;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (commandAt < 0 && !a.startsWith("-")) {
                commandAt = i;
            }
            String file = null;
            if (a.equals("--config") && i + 1 < args.length) {
                file = args[++i];
            } else if (a.startsWith("--config=")) {
                file = a.substring("--config=".length());
            }
            if (file != null) {
                fromFiles.addAll(options(file, storage(args)));
            } else {
                out.add(a);
            }
        }
        if (fromFiles.isEmpty()) {
            return out.toArray(String[]::new);
        }
        int insertAt = commandAt < 0 ? out.size() : commandAt + 1;
        out.addAll(Math.min(insertAt, out.size()), fromFiles);
        return out.toArray(String[]::new);
    }

    private static Storage storage(String[] args) {
        Map<String, String> conf = new LinkedHashMap<>();
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("--conf") && args[i + 1].contains("=")) {
                String kv = args[i + 1];
                conf.put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
            }
        }
        return Storage.of(CommonOptions.hadoopSettings(conf));
    }

    static List<String> options(String file, Storage storage) {
        String text = storage.readString(file);
        Map<String, Object> values = new LinkedHashMap<>();
        if (file.toLowerCase(Locale.ROOT).endsWith(".properties")) {
            Properties p = new Properties();
            try {
                p.load(new StringReader(text));
            } catch (IOException e) {
                throw SparkQuantException.badInput(file + ": " + e.getMessage());
            }
            p.stringPropertyNames().stream().sorted().forEach(k -> values.put(k, p.getProperty(k).trim()));
        } else {
            JsonNode root;
            try {
                root = new ObjectMapper(new YAMLFactory()).readTree(text);
            } catch (IOException e) {
                throw SparkQuantException.badInput(file + ": not valid YAML (" + e.getMessage().lines().findFirst()
                        .orElse("") + ")");
            }
            if (root == null || root.isMissingNode() || root.isNull()) {
                return List.of();
            }
            if (!root.isObject()) {
                throw SparkQuantException.badInput(file + ": expected a mapping of option names to values");
            }
            root.fields().forEachRemaining(e -> values.put(e.getKey(), e.getValue()));
        }
        List<String> args = new ArrayList<>();
        for (Map.Entry<String, Object> e : values.entrySet()) {
            String key = e.getKey();
            if (key.startsWith("-")) {
                throw SparkQuantException.badInput(file + ": write option names without dashes ('" + key + "')");
            }
            Object v = e.getValue();
            if (key.equals("conf") && v instanceof JsonNode n && n.isObject()) {
                n.fields().forEachRemaining(c -> {
                    args.add("--conf");
                    args.add(c.getKey() + "=" + c.getValue().asText());
                });
            } else if (v instanceof JsonNode n && n.isBoolean()) {
                if (n.booleanValue()) {
                    args.add("--" + key);
                }
            } else if (v instanceof JsonNode n && n.isArray()) {
                for (JsonNode item : n) {
                    args.add("--" + key);
                    args.add(item.asText());
                }
            } else if (v instanceof JsonNode n && (n.isObject())) {
                throw SparkQuantException.badInput(file + ": option '" + key + "' cannot take a mapping");
            } else {
                String s = v instanceof JsonNode n ? n.asText() : v.toString();
                if (s.equalsIgnoreCase("true") && !(v instanceof JsonNode)) {
                    args.add("--" + key);
                } else if (!(s.equalsIgnoreCase("false") && !(v instanceof JsonNode))) {
                    args.add("--" + key);
                    args.add(s);
                }
            }
        }
        return args;
    }
}
