"""Score a customer-support chatbot: replies and reference perplexity, overall and per intent/category (see --help)."""

from recipekit.chatbot.scoring import main

if __name__ == "__main__":
    raise SystemExit(main())
