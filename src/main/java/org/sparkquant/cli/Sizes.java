package org.sparkquant.cli;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.sparkquant.SparkQuantException;

/** Parses sizes like {@code 5GB}, {@code 500MiB}, {@code 1048576}. */
final class Sizes {
    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([KMGT]?I?B?)?");

    private Sizes() {}

    static long parse(String text, String option) {
        Matcher m = SIZE.matcher(text.trim().toUpperCase(Locale.ROOT));
        if (!m.matches()) {
            throw SparkQuantException.badInput(option + ": cannot parse size '" + text + "' (e.g. 5GB, 500MiB)");
        }
        double value = Double.parseDouble(m.group(1));
        String unit = m.group(2) == null ? "" : m.group(2);
        boolean binary = unit.contains("I");
        long base = binary ? 1024 : 1000;
        long factor = switch (unit.isEmpty() ? ' ' : unit.charAt(0)) {
            case 'K' -> base;
            case 'M' -> base * base;
            case 'G' -> base * base * base;
            case 'T' -> base * base * base * base;
            default -> 1;
        };
        if (value * factor >= 0x1p62) {
            throw SparkQuantException.badInput(option + ": size '" + text + "' is out of range");
        }
        long bytes = (long) (value * factor);
        if (bytes <= 0) {
            throw SparkQuantException.badInput(option + ": size must be positive, got '" + text + "'");
        }
        return bytes;
    }
}
