package org.sparkquant.cli;

public final class SparkQuant {
    public static void main(String[] args) {
    }
}
