// envsync's small client side: htmx does the work; nothing here is required for the pages to function.
