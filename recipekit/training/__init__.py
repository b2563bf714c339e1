"""The Axolotl side: recipe configs, the `axolotl train` runner and the plugins every recipe lists."""
