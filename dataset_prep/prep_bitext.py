"""Command-line entry point of recipekit.chatbot.prep (run with --help for its options)."""

from recipekit.chatbot.prep import main

if __name__ == "__main__":
    raise SystemExit(main())
