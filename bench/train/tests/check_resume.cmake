# train.resume.*: 2 epochs in one run must leave exactly the same training state (every rank's
# optimizer state, which holds the model, momenta and error memories, plus the BN buffers) as
# 1 epoch, a checkpoint, and a resumed run for the second epoch.
# Inputs: MPI, TRAIN, EQUAL (gradcomp_train_ckpt_equal), OUT, PRESET.
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
set(common --preset ${PRESET} --model resnet8 --batch 16 --lr 0.05 --train-subset 512
           --test-subset 128 --seed 3 --threads 1 --progress lines)
function(train)
  execute_process(COMMAND ${MPI} ${TRAIN} ${common} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 240)
  message("${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "gradcomp-train ${ARGN} exited with ${rc}")
  endif()
endfunction()
train(--epochs 2 --checkpoint ${OUT}/full.ckpt)
train(--epochs 1 --checkpoint ${OUT}/half.ckpt)
train(--epochs 2 --resume ${OUT}/half.ckpt --checkpoint ${OUT}/resumed.ckpt --json ${OUT}/r.json)

execute_process(COMMAND ${EQUAL} ${OUT}/full.ckpt ${OUT}/resumed.ckpt RESULT_VARIABLE rc
                OUTPUT_VARIABLE out)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "2 epochs and 1 + resumed 1 differ")
endif()
# The comparison must be able to fail: after 1 and after 2 epochs the states differ.
execute_process(COMMAND ${EQUAL} ${OUT}/full.ckpt ${OUT}/half.ckpt RESULT_VARIABLE rc
                OUTPUT_QUIET)
if(rc EQUAL 0)
  message(FATAL_ERROR "the checkpoint comparison does not see 1 epoch vs 2")
endif()
# The resumed run's JSON carries both epochs (the first from the checkpoint).
file(READ ${OUT}/r.json j)
string(JSON n LENGTH "${j}" epochs)
string(JSON e2 GET "${j}" epochs 1 epoch)
if(NOT n EQUAL 2 OR NOT e2 EQUAL 2)
  message(FATAL_ERROR "resumed JSON has ${n} records (epoch[1] = ${e2})")
endif()
# A resume with another configuration is refused with a message naming the difference.
execute_process(COMMAND ${MPI} ${TRAIN} ${common} --epochs 2 --batch 32 --resume
                        ${OUT}/half.ckpt
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(rc EQUAL 0 OR NOT err MATCHES "batch: checkpoint has '16', this run has '32'")
  message(FATAL_ERROR "mismatched resume: rc ${rc}, stderr: ${err}")
endif()
message(STATUS "resume OK")
