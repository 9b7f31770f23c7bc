from jaxrl.synth.run import main

main()
